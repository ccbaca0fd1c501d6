#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/recycled_buffers.hpp"

namespace fastembed::bindings {

namespace py = pybind11;

void register_memory(py::module_& m) {
    m.def(
        "set_buffer_cache_limit",
        [](long long nbytes) {
            if (nbytes < 0) {
                throw py::value_error("nbytes must be >= 0, got " + std::to_string(nbytes));
            }
            return set_recycled_limit(static_cast<std::size_t>(nbytes));
        },
        py::arg("nbytes"));
    // An uninitialised array from the recycled buffers, for results that several kernel calls
    // fill (a sharded lookup: each shard writes its rows into one output).
    m.def(
        "empty",
        [](const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
            for (py::ssize_t extent : shape) {
                if (extent < 0) throw py::value_error("negative dimension in shape");
            }
            return new_result(dtype, shape);
        },
        py::arg("shape"), py::arg("dtype"));
}

}  // namespace fastembed::bindings
