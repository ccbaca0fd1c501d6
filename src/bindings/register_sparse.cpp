#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "bindings/sparse_output.hpp"
#include "kernels/sparse_grad.hpp"

namespace fastembed::bindings {

namespace {

// (indices, values) of the row-sparse gradient; python/fastembed/sparse.py wraps them.
py::tuple sparse_grad(const py::array& grad_output, const py::array& ids, long long num_embeddings,
                      std::optional<long long> padding_idx, bool scale_grad_by_freq) {
    const GradOptions options = grad_options(num_embeddings, padding_idx, scale_grad_by_freq);
    return dispatch_lookup_grad(grad_output, ids, [&](auto grad_tag, const auto* grad, std::size_t dim) {
        using T = typename decltype(grad_tag)::type;
        const auto n = static_cast<std::size_t>(ids.size());
        const auto rows = static_cast<std::size_t>(num_embeddings);
        NumpySparseOutput<T> output;
        call_with_ids(ids, rows, [&](const auto* id_data) {
            fastembed::sparse_grad(grad, id_data, n, dim, rows, options, output);
        });
        return output.result();
    });
}

}  // namespace

void register_sparse(py::module_& m) {
    m.def("sparse_grad", &sparse_grad, py::arg("grad_output"), py::arg("ids"),
          py::arg("num_embeddings"), py::arg("padding_idx") = py::none(),
          py::arg("scale_grad_by_freq") = false);
}

}  // namespace fastembed::bindings
