#include <pybind11/pybind11.h>

#include <string>

#include "bindings/register.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed::bindings {

namespace py = pybind11;

void register_threads(py::module_& m) {
    m.def("get_num_threads", &get_num_threads);
    m.def("available_cores", &available_cores);
    m.def(
        "set_num_threads",
        [](long long n) {
            if (n < 1 || static_cast<unsigned long long>(n) > kMaxThreads) {
                throw py::value_error("num_threads must be in [1, " + std::to_string(kMaxThreads) +
                                      "], got " + std::to_string(n));
            }
            py::gil_scoped_release release;  // waits for running kernels, which never need the GIL
            set_num_threads(static_cast<std::size_t>(n));
        },
        py::arg("n"));
}

}  // namespace fastembed::bindings
