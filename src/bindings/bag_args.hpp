// Checks of the arguments that describe bags, shared by the bag and optimizer bindings.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "bindings/arrays.hpp"
#include "kernels/bag.hpp"

namespace fastembed::bindings {

BagMode parse_bag_mode(const std::string& mode);

// The bags of `n` flat ids from `bounds` (int64, 1-d, C-contiguous, num_bags + 1 entries,
// starting at 0 unless there are no bags, non-decreasing, ending at most at n). The Python
// layer has already reported bad offsets in the user's terms; this guards the kernels.
BagLayout bag_layout(const py::array& bounds, std::size_t n);

// The bounds of the bags PyTorch's `offsets` describe over `num_ids` flat ids: the offsets, then
// num_ids unless include_last_offset (offsets[-1] then ends the last bag). `offsets` is int32 or
// int64, 1-d and C-contiguous (the Python layer converts anything else); ValueError, in the
// user's terms, for the first offset that breaks a rule: offsets[0] == 0, non-decreasing, at
// most num_ids.
// One pass where the same checks in NumPy took ten calls (~3 us for a bag of one id).
py::array bag_bounds(const py::array& offsets, std::size_t num_ids, bool include_last_offset);

// padding_idx in [0, num_embeddings), or -1 for none.
std::int64_t checked_padding_idx(long long padding_idx, std::size_t num_embeddings);

// The forward's argmax for max: int64 (num_bags, dim), C-contiguous, each entry -1 (a bag with
// no maximum: empty, or padding only) or a position inside its own bag. The kernels index with
// it, so a position from elsewhere (another batch, a corrupted array) is an error here, not a
// stray read or write.
const std::int64_t* checked_argmax(const std::optional<py::array>& argmax, const BagLayout& bags,
                                   std::size_t dim);

// per_sample_weights: only with sum; dtype T, n entries, C-contiguous. Returns its data or null.
template <class T>
const T* per_sample_weights_data(const std::optional<py::array>& weights, BagMode mode, std::size_t n) {
    if (!weights) return nullptr;
    if (mode != BagMode::sum) {
        throw py::value_error("per_sample_weights are only supported with mode='sum'");
    }
    if (!py::isinstance<py::array_t<T>>(*weights)) {
        throw py::type_error("per_sample_weights must have the dtype of the table, " +
                             std::string(py::str(py::dtype::of<T>())) + ", got " +
                             dtype_name(*weights));
    }
    if (static_cast<std::size_t>(weights->size()) != n) {
        throw py::value_error("per_sample_weights must have one entry per id (" + std::to_string(n) +
                              "), got shape " + shape_string(*weights));
    }
    require_layout(*weights, "per_sample_weights", false);
    return static_cast<const T*>(weights->data());
}

}  // namespace fastembed::bindings
