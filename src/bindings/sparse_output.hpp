// Where the row-sparse kernels (sparse_grad, the bag's sparse backward) put their result.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "bindings/arrays.hpp"

namespace fastembed::bindings {

// The sparse kernel's result memory: NumPy arrays from new_result (large ones in recycled
// buffers), made once the kernel knows the row count. The kernel runs with the GIL released,
// so each request takes it back for the moment of the allocation.
template <class T>
class NumpySparseOutput {
  public:
    std::int64_t* indices(std::size_t rows) {
        py::gil_scoped_acquire gil;
        indices_ = new_result(py::dtype::of<std::int64_t>(), {static_cast<py::ssize_t>(rows)});
        return static_cast<std::int64_t*>(indices_->mutable_data());
    }
    T* values(std::size_t rows, std::size_t dim) {
        py::gil_scoped_acquire gil;
        values_ = new_result(dtype_of<T>(),
                             {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(dim)});
        return static_cast<T*>(values_->mutable_data());
    }
    py::tuple result() const { return py::make_tuple(*indices_, *values_); }

  private:
    std::optional<py::array> indices_;
    std::optional<py::array> values_;
};

}  // namespace fastembed::bindings
