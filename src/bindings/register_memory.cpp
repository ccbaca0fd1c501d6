#include <pybind11/pybind11.h>

#include <string>

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
}

}  // namespace fastembed::bindings
