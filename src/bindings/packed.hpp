// Checks of row-wise quantized tables (kernels/quantize.hpp), shared by the quantize and bag
// bindings.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "bindings/arrays.hpp"
#include "kernels/half.hpp"

namespace fastembed::bindings {

// Calls f(std::integral_constant<unsigned, Bits>) for bits 8 or 4, else ValueError.
template <class F>
decltype(auto) dispatch_bits(long long bits, F&& f) {
    if (bits == 8) return f(std::integral_constant<unsigned, 8>{});
    if (bits == 4) return f(std::integral_constant<unsigned, 4>{});
    throw py::value_error("bits must be 8 or 4, got " + std::to_string(bits));
}

// The embedding_dim of a packed table: uint8, 2-d, C-contiguous, rows of
// packed_row_bytes(bits, D) bytes (bits already checked).
inline std::size_t packed_dim(const py::array& packed, long long bits) {
    if (!py::isinstance<py::array_t<std::uint8_t>>(packed)) {
        throw py::type_error("packed must be uint8, got " + dtype_name(packed));
    }
    if (packed.ndim() != 2) {
        throw py::value_error("packed must be 2-d (num_embeddings, row bytes), got shape " +
                              shape_string(packed));
    }
    require_layout(packed, "packed", false);
    const auto width = static_cast<std::size_t>(packed.shape(1));
    const std::size_t tail = bits == 8 ? 2 * sizeof(float) : 2 * sizeof(Float16);
    if (width < tail) {
        throw py::value_error("each packed row of " + std::to_string(bits) +
                              "-bit codes ends in " + std::to_string(tail) +
                              " bytes of scale and bias: width " + std::to_string(width) +
                              " is too small");
    }
    return bits == 8 ? width - tail : 2 * (width - tail);
}

}  // namespace fastembed::bindings
