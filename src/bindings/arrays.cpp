#include "bindings/arrays.hpp"

#include "kernels/grad_options.hpp"

#include <pybind11/numpy.h>

#include <cstdint>
#include <string>

#include "kernels/recycled_buffers.hpp"

namespace fastembed::bindings {

std::string shape_string(const py::array& array) {
    return py::str(py::tuple(array.attr("shape")));
}

std::string dtype_name(const py::array& array) { return py::str(array.dtype()); }

Storage storage_of(const py::array& array) {
    const py::dtype dtype = array.dtype();
    // Native byte order only: the kernels read the bytes as they are.
    const char kind = dtype.kind();
    if (kind != 'f' && kind != 'V') return Storage::other;
    if (!dtype.attr("isnative").cast<bool>()) return Storage::other;
    const auto size = dtype.itemsize();
    if (kind == 'f') {
        if (size == 4) return Storage::float32;
        if (size == 8) return Storage::float64;
        if (size == 2) return Storage::float16;
    } else if (kind == 'V' && size == 2 && py::str(dtype.attr("name")).cast<std::string>() == "bfloat16") {
        return Storage::bfloat16;
    }
    return Storage::other;
}

void require_layout(const py::array& array, const char* name, bool writeable) {
    if (!(array.flags() & py::array::c_style)) {
        throw py::value_error(std::string(name) + " must be C-contiguous (use np.ascontiguousarray)");
    }
    // The kernels read elements through typed pointers; an element off its dtype's alignment (a
    // view at an odd byte offset, a map of a foreign archive member) is undefined behaviour there.
    if (!(array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::value_error(std::string(name) + " is not aligned to its dtype " + dtype_name(array) +
                              " (address " + std::to_string(reinterpret_cast<std::uintptr_t>(array.data())) +
                              "); np.require(" + name + ", requirements='CA') makes an aligned copy");
    }
    if (writeable && !array.writeable()) {
        throw py::value_error(std::string(name) + " is read-only");
    }
}

void require_disjoint(const py::array& a, const char* a_name, const py::array& b, const char* b_name) {
    const auto begin_a = reinterpret_cast<std::uintptr_t>(a.data());
    const auto begin_b = reinterpret_cast<std::uintptr_t>(b.data());
    const auto end_a = begin_a + static_cast<std::uintptr_t>(a.nbytes());
    const auto end_b = begin_b + static_cast<std::uintptr_t>(b.nbytes());
    if (a.nbytes() > 0 && b.nbytes() > 0 && begin_a < end_b && begin_b < end_a) {
        throw py::value_error(std::string(a_name) + " must not overlap " + b_name);
    }
}

void require_ids(const py::array& ids, const char* name) {
    if (!py::isinstance<py::array_t<std::int32_t>>(ids) &&
        !py::isinstance<py::array_t<std::int64_t>>(ids)) {
        throw py::type_error(std::string(name) + " must be int32 or int64, got " + dtype_name(ids));
    }
    require_layout(ids, name, false);
}

py::array new_result(const py::dtype& dtype, const std::vector<py::ssize_t>& shape) {
    std::size_t bytes = static_cast<std::size_t>(dtype.itemsize());
    for (py::ssize_t extent : shape) bytes *= static_cast<std::size_t>(extent);
    if (bytes < kMinRecycledBytes) return py::array(dtype, shape);
    // Taken and given back with the GIL held, so a fork() never finds the recycler locked.
    auto* buffer = new Buffer(take_buffer(bytes));
    py::capsule owner(buffer, [](void* p) {
        auto* owned = static_cast<Buffer*>(p);
        give_back_buffer(*owned);
        delete owned;
    });
    return py::array(dtype, shape, std::vector<py::ssize_t>{}, buffer->data, owner);
}

std::string id_error_message(const py::array& ids, std::size_t flat_position, std::int64_t id,
                             std::size_t num_embeddings) {
    std::string index;
    std::size_t rest = flat_position;
    for (py::ssize_t axis = ids.ndim() - 1; axis >= 0; --axis) {
        const auto extent = static_cast<std::size_t>(ids.shape(axis));
        const std::string coordinate = std::to_string(rest % extent);
        index = axis == ids.ndim() - 1 ? coordinate : coordinate + ", " + index;
        rest /= extent;
    }
    if (ids.ndim() == 0) index = "()";
    return "id " + std::to_string(id) + " at ids[" + index + "] is out of range for num_embeddings=" +
           std::to_string(num_embeddings) + " (valid ids are 0.." +
           std::to_string(static_cast<std::int64_t>(num_embeddings) - 1) + ")";
}

void require_grad_shape(const py::array& grad_output, const py::array& ids) {
    bool matches = grad_output.ndim() == ids.ndim() + 1;
    for (py::ssize_t axis = 0; matches && axis < ids.ndim(); ++axis) {
        matches = grad_output.shape(axis) == ids.shape(axis);
    }
    if (!matches) {
        throw py::value_error("grad_output must have shape ids.shape + (embedding_dim,) = " +
                              shape_string(ids) + " + (D,), got " + shape_string(grad_output));
    }
}

void require_num_embeddings(long long num_embeddings) {
    if (num_embeddings < 0) {
        throw py::value_error("num_embeddings must be >= 0, got " + std::to_string(num_embeddings));
    }
}

GradOptions grad_options(long long num_embeddings, std::optional<long long> padding_idx,
                         bool scale_grad_by_freq) {
    require_num_embeddings(num_embeddings);
    GradOptions options;
    options.scale_grad_by_freq = scale_grad_by_freq;
    if (padding_idx) {
        const long long given = *padding_idx;
        if (given < -num_embeddings || given >= num_embeddings) {
            throw py::value_error("padding_idx=" + std::to_string(given) +
                                  " is out of range for num_embeddings=" +
                                  std::to_string(num_embeddings) + " (valid: " +
                                  std::to_string(-num_embeddings) + ".." +
                                  std::to_string(num_embeddings - 1) + ")");
        }
        options.padding_idx = static_cast<std::uint64_t>(given < 0 ? given + num_embeddings : given);
    }
    return options;
}

}  // namespace fastembed::bindings
