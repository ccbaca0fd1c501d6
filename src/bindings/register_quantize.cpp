// Row-wise quantized tables (kernels/quantize.hpp): packing a float32 table, and lookups that
// dequantize in registers. python/fastembed/quantized.py wraps the packed array.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/packed.hpp"
#include "bindings/register.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/gather.hpp"
#include "kernels/quantize.hpp"

namespace fastembed::bindings {

namespace {

py::array quantize(const py::array& weight, long long bits) {
    if (!py::isinstance<py::array_t<float>>(weight)) {
        throw py::type_error("weight must be float32, got " + dtype_name(weight));
    }
    if (weight.ndim() != 2) {
        throw py::value_error("weight must be 2-d (num_embeddings, embedding_dim), got shape " +
                              shape_string(weight));
    }
    require_layout(weight, "weight", false);
    const auto rows = static_cast<std::size_t>(weight.shape(0));
    const auto dim = static_cast<std::size_t>(weight.shape(1));
    return dispatch_bits(bits, [&](auto bits_tag) {
        constexpr unsigned Bits = decltype(bits_tag)::value;
        if (Bits == 4 && dim % 2 != 0) {
            throw py::value_error("4-bit quantization needs an even embedding_dim (two codes per "
                                  "byte, as FBGEMM), got " + std::to_string(dim));
        }
        // A fresh array (a table that fails the check leaves nothing behind), in a recycled
        // buffer when large: faulting in a new 72 MB table took 5 of quantize's 13 ms.
        py::array packed = new_result(py::dtype::of<std::uint8_t>(),
                                      {static_cast<py::ssize_t>(rows),
                                       static_cast<py::ssize_t>(packed_row_bytes(Bits, dim))});
        const float* table = static_cast<const float*>(weight.data());
        auto* destination = static_cast<std::uint8_t*>(packed.mutable_data());
        try {
            py::gil_scoped_release release;
            quantize_rows<Bits>(table, rows, dim, destination);
        } catch (const NonFiniteValue& e) {
            throw py::value_error("cannot quantize a table holding NaN or infinity: weight[" +
                                  std::to_string(e.row) + ", " + std::to_string(e.column) + "] = " +
                                  std::string(py::str(py::float_(e.value))));
        }
        return packed;
    });
}

// out[..., :] = the dequantized rows ids[...] (every row when ids is None), float32.
py::array dequantize(const py::array& packed, long long bits, const std::optional<py::array>& ids,
                     const std::optional<py::array>& out) {
    if (ids) require_ids(*ids);
    return dispatch_bits(bits, [&](auto bits_tag) {
        constexpr unsigned Bits = decltype(bits_tag)::value;
        const std::size_t dim = packed_dim(packed, bits);
        const auto num_embeddings = static_cast<std::size_t>(packed.shape(0));
        const QuantizedRows<Bits> table(static_cast<const std::uint8_t*>(packed.data()), num_embeddings, dim);
        std::vector<py::ssize_t> shape;
        if (ids) {
            shape.assign(ids->shape(), ids->shape() + ids->ndim());
        } else {
            shape.push_back(static_cast<py::ssize_t>(num_embeddings));
        }
        shape.push_back(static_cast<py::ssize_t>(dim));
        std::vector<std::pair<const py::array*, const char*>> inputs{{&packed, "packed"}};
        if (ids) inputs.emplace_back(&*ids, "ids");
        py::array result = output_array<float>(out, shape, inputs);
        float* destination = static_cast<float*>(result.mutable_data());
        if (!ids) {
            py::gil_scoped_release release;
            dequantize_all(table, destination);
            return result;
        }
        const auto n = static_cast<std::size_t>(ids->size());
        call_with_ids(*ids, num_embeddings, [&](const auto* id_data) {
            check_ids(id_data, n, num_embeddings);
            copy_table_rows(table, num_embeddings, dim, id_data, n, destination);
        });
        return result;
    });
}

}  // namespace

void register_quantize(py::module_& m) {
    m.def("quantize", &quantize, py::arg("weight"), py::arg("bits"));
    m.def("packed_dim", [](const py::array& packed, long long bits) {
        return dispatch_bits(bits, [&](auto) { return packed_dim(packed, bits); });
    }, py::arg("packed"), py::arg("bits"));
    m.def("dequantize", &dequantize, py::arg("packed"), py::arg("bits"), py::arg("ids") = py::none(),
          py::arg("out") = py::none());
}

}  // namespace fastembed::bindings
