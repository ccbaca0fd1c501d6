// Array checks and dtype dispatch shared by the binding files. Every check runs before a kernel
// is called, so a rejected call never writes to any array.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/half.hpp"

namespace fastembed::bindings {

namespace py = pybind11;

template <class T>
struct Tag {
    using type = T;
};

std::string shape_string(const py::array& array);
std::string dtype_name(const py::array& array);

// ValueError unless `array` is C-contiguous, aligned to its dtype (and writeable, if `writeable`).
void require_layout(const py::array& array, const char* name, bool writeable);

// ValueError if the bytes of `a` and `b` overlap.
void require_disjoint(const py::array& a, const char* a_name, const py::array& b, const char* b_name);

// Flattened ids (or another index array, `name`): int32 or int64 in native byte order,
// C-contiguous (the Python layer converts).
void require_ids(const py::array& ids, const char* name = "ids");

// IndexError text for ids[flat_position] = id outside [0, num_embeddings).
std::string id_error_message(const py::array& ids, std::size_t flat_position, std::int64_t id,
                             std::size_t num_embeddings);

// ValueError unless grad_output has shape ids.shape + (embedding_dim,).
void require_grad_shape(const py::array& grad_output, const py::array& ids);

// ValueError unless num_embeddings >= 0.
void require_num_embeddings(long long num_embeddings);

// The options of an embedding backward, after checking num_embeddings (>= 0) and padding_idx
// (-num_embeddings <= padding_idx < num_embeddings; negative values count from the end, as in
// PyTorch). `accumulate` is left false.
GradOptions grad_options(long long num_embeddings, std::optional<long long> padding_idx,
                         bool scale_grad_by_freq);

// The storage types of tables and gradients: float32, float64, float16 and bfloat16
// (ml_dtypes.bfloat16, a NumPy dtype of kind 'V' named "bfloat16").
enum class Storage { float32, float64, float16, bfloat16, other };

Storage storage_of(const py::array& array);

template <class S>
inline constexpr Storage storage_v = std::is_same_v<S, float>      ? Storage::float32
                                     : std::is_same_v<S, double>   ? Storage::float64
                                     : std::is_same_v<S, Float16>  ? Storage::float16
                                     : std::is_same_v<S, BFloat16> ? Storage::bfloat16
                                                                   : Storage::other;

// Whether `array` has the dtype stored as S. A type that is no table storage (the int64 ids of a
// result) is matched by its own dtype: every such type has Storage::other, so comparing storages
// would let an int32 array pass for int64.
template <class S>
bool has_storage(const py::array& array) {
    if constexpr (storage_v<S> == Storage::other) {
        return py::isinstance<py::array_t<S>>(array);
    } else {
        return storage_of(array) == storage_v<S>;
    }
}

// The NumPy dtype of storage S (bfloat16 imports ml_dtypes, which a bfloat16 input implies).
template <class S>
py::dtype dtype_of() {
    if constexpr (std::is_same_v<S, Float16>) {
        return py::dtype("float16");
    } else if constexpr (std::is_same_v<S, BFloat16>) {
        return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
    } else {
        return py::dtype::of<S>();
    }
}

// Calls f(Tag<S>{}) for the storage type of `array`: float32, float64, float16 or bfloat16,
// else TypeError. The one dispatch of every table and gradient dtype.
template <class F>
decltype(auto) dispatch_storage(const py::array& array, const char* name, F&& f) {
    switch (storage_of(array)) {
        case Storage::float32: return f(Tag<float>{});
        case Storage::float64: return f(Tag<double>{});
        case Storage::float16: return f(Tag<Float16>{});
        case Storage::bfloat16: return f(Tag<BFloat16>{});
        case Storage::other: break;
    }
    throw py::type_error(std::string(name) + " must be float32 or float64 (or float16, bfloat16), got " +
                         dtype_name(array));
}

// Calls f(Tag<T>{}) for the floating dtype of `array` (float32 or float64), else TypeError.
template <class F>
decltype(auto) dispatch_float(const py::array& array, const char* name, F&& f) {
    if (py::isinstance<py::array_t<float>>(array)) return f(Tag<float>{});
    if (py::isinstance<py::array_t<double>>(array)) return f(Tag<double>{});
    throw py::type_error(std::string(name) + " must be float32 or float64, got " + dtype_name(array));
}

// Calls f(Tag<Out>{}) for the dtype a result computed from S-typed data is written in: that of
// `out` when given (any storage computed in the same arithmetic as S: float32, float16 and
// bfloat16 share float32's), else S itself.
template <class S, class F>
decltype(auto) dispatch_result(const std::optional<py::array>& out, F&& f) {
    if (!out || has_storage<S>(*out)) return f(Tag<S>{});
    if constexpr (std::is_same_v<accumulator_t<S>, float>) {
        switch (storage_of(*out)) {
            case Storage::float32: return f(Tag<float>{});
            case Storage::float16: return f(Tag<Float16>{});
            case Storage::bfloat16: return f(Tag<BFloat16>{});
            default: break;
        }
        throw py::type_error("out must have dtype float32, float16 or bfloat16 for a " +
                             std::string(py::str(dtype_of<S>())) + " input, got " +
                             dtype_name(*out));
    } else {
        throw py::type_error("out must have dtype " + std::string(py::str(dtype_of<S>())) +
                             ", got " + dtype_name(*out));
    }
}

// The gradient of a plain lookup (scatter_add, sparse_grad): checks ids and grad_output (shape
// ids.shape + (dim,), any storage dtype, C-contiguous) and calls f(Tag<S>{}, grad, dim).
template <class F>
decltype(auto) dispatch_lookup_grad(const py::array& grad_output, const py::array& ids, F&& f) {
    require_ids(ids);
    require_grad_shape(grad_output, ids);
    return dispatch_storage(grad_output, "grad_output", [&](auto storage_tag) {
        using S = typename decltype(storage_tag)::type;
        require_layout(grad_output, "grad_output", false);
        const auto dim = static_cast<std::size_t>(grad_output.shape(grad_output.ndim() - 1));
        return f(storage_tag, static_cast<const S*>(grad_output.data()), dim);
    });
}

// The gradient a layer's table of storage W takes (the fused optimizers, the per-sample-weights
// gradient): calls f(Tag<S>{}) for S its arithmetic type or, for a float16 / bfloat16 table,
// W itself (read in float32 by the row sources); else TypeError naming both.
template <class W, class F>
decltype(auto) dispatch_table_grad(const py::array& grad_output, const py::array& weight, F&& f) {
    if (has_storage<accumulator_t<W>>(grad_output)) return f(Tag<accumulator_t<W>>{});
    if constexpr (is_reduced_precision<W>) {
        if (has_storage<W>(grad_output)) return f(Tag<W>{});
    }
    throw py::type_error("grad_output must have the dtype of weight (" + dtype_name(weight) + ")" +
                         (is_reduced_precision<W> ? " or float32" : "") + ", got " +
                         dtype_name(grad_output));
}

// Calls f(Tag<I>{}) for the id dtype (int32 or int64); require_ids() has checked it.
template <class F>
decltype(auto) dispatch_ids(const py::array& ids, F&& f) {
    if (py::isinstance<py::array_t<std::int32_t>>(ids)) return f(Tag<std::int32_t>{});
    return f(Tag<std::int64_t>{});
}

// A new uninitialised C-contiguous array. Large ones live in recycled buffers (see
// kernels/recycled_buffers.hpp), which go back to the recycler when the array is dropped.
py::array new_result(const py::dtype& dtype, const std::vector<py::ssize_t>& shape);

// TypeError unless `array` has dtype T, the dtype of `owner_name` (e.g. the table).
template <class T>
void require_dtype(const py::array& array, const char* name, const char* owner_name) {
    if (!has_storage<T>(array)) {
        throw py::type_error(std::string(name) + " must have the dtype of " + owner_name + ", " +
                             std::string(py::str(dtype_of<T>())) + ", got " +
                             dtype_name(array));
    }
}

// Calls kernel(ids_data) with the ids as `const I*` of their dtype (int32 or int64) and the GIL
// released; an id out of range becomes an IndexError naming it and its position.
template <class Kernel>
void call_with_ids(const py::array& ids, std::size_t num_embeddings, Kernel&& kernel) {
    dispatch_ids(ids, [&](auto id_tag) {
        using I = typename decltype(id_tag)::type;
        try {
            py::gil_scoped_release release;
            kernel(static_cast<const I*>(ids.data()));
        } catch (const IdOutOfRange& e) {
            throw py::index_error(id_error_message(ids, e.position, e.id, num_embeddings));
        }
    });
}

// `out` if given (after checking shape, dtype, layout and overlap with `inputs`), else a new
// uninitialised array.
template <class T>
py::array output_array(const std::optional<py::array>& out, const std::vector<py::ssize_t>& shape,
                       const std::vector<std::pair<const py::array*, const char*>>& inputs) {
    if (!out) return new_result(dtype_of<T>(), shape);
    const py::array& given = *out;
    if (!has_storage<T>(given)) {
        throw py::type_error("out must have dtype " + std::string(py::str(dtype_of<T>())) +
                             ", got " + dtype_name(given));
    }
    const std::vector<py::ssize_t> given_shape(given.shape(), given.shape() + given.ndim());
    if (given_shape != shape) {
        py::tuple expected(shape.size());
        for (std::size_t i = 0; i < shape.size(); ++i) expected[i] = shape[i];
        throw py::value_error("out must have shape " + std::string(py::str(expected)) + ", got " +
                              shape_string(given));
    }
    require_layout(given, "out", true);
    for (const auto& [input, name] : inputs) require_disjoint(given, "out", *input, name);
    return given;
}

}  // namespace fastembed::bindings
