#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/scatter.hpp"

namespace fastembed::bindings {

namespace {

py::array scatter_add(const py::array& grad_output, const py::array& ids, long long num_embeddings,
                      const std::optional<py::array>& out, std::optional<long long> padding_idx,
                      bool scale_grad_by_freq, bool accumulate) {
    GradOptions options = grad_options(num_embeddings, padding_idx, scale_grad_by_freq);
    options.accumulate = accumulate;
    if (accumulate && !out) throw py::value_error("accumulate=True needs out= (the gradient to add into)");
    return dispatch_lookup_grad(grad_output, ids, [&](auto grad_tag, const auto* grad, std::size_t dim) {
        using S = typename decltype(grad_tag)::type;
        // The result has grad_output's dtype unless `out` is of another one with the same
        // arithmetic (sums in float32, rounded once into float16 or bfloat16).
        return dispatch_result<S>(out, [&](auto out_tag) {
            using Out = typename decltype(out_tag)::type;
            const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(num_embeddings),
                                                 static_cast<py::ssize_t>(dim)};
            py::array result =
                output_array<Out>(out, shape, {{&grad_output, "grad_output"}, {&ids, "ids"}});
            Out* destination = static_cast<Out*>(result.mutable_data());
            const auto n = static_cast<std::size_t>(ids.size());
            const auto rows = static_cast<std::size_t>(num_embeddings);
            call_with_ids(ids, rows, [&](const auto* id_data) {
                sorted_scatter_add(grad, id_data, n, dim, rows, destination, options);
            });
            return result;
        });
    });
}

}  // namespace

void register_scatter(py::module_& m) {
    m.def("scatter_add", &scatter_add, py::arg("grad_output"), py::arg("ids"),
          py::arg("num_embeddings"), py::arg("out") = py::none(),
          py::arg("padding_idx") = py::none(), py::arg("scale_grad_by_freq") = false,
          py::arg("accumulate") = false);
}

}  // namespace fastembed::bindings
