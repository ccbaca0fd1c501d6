#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/max_norm.hpp"
#include "bindings/register.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/gather.hpp"
#include "kernels/renorm.hpp"

namespace fastembed::bindings {

namespace {

py::array gather(const py::array& weight, const py::array& ids, const std::optional<py::array>& out,
                 std::optional<double> max_norm, double norm_type) {
    if (max_norm) require_norm_options(*max_norm, norm_type);
    if (weight.ndim() != 2) {
        throw py::value_error("weight must be 2-d (num_embeddings, embedding_dim), got shape " +
                              shape_string(weight));
    }
    require_ids(ids);
    return dispatch_storage(weight, "weight", [&](auto storage_tag) {
        using S = typename decltype(storage_tag)::type;
        require_layout(weight, "weight", false);
        std::vector<py::ssize_t> shape(ids.shape(), ids.shape() + ids.ndim());
        shape.push_back(weight.shape(1));
        const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
        const auto dim = static_cast<std::size_t>(weight.shape(1));
        const auto n = static_cast<std::size_t>(ids.size());
        const S* table = static_cast<const S*>(weight.data());
        const bool writeable = weight.writeable();
        // Rows land in the table's dtype, or widened into a float32 `out` (a float16 or
        // bfloat16 table feeding a float32 model without a second pass).
        auto copy_into = [&](auto out_tag, const auto& rows) {
            using Out = typename decltype(out_tag)::type;
            py::array result = output_array<Out>(out, shape, {{&weight, "weight"}, {&ids, "ids"}});
            Out* destination = static_cast<Out*>(result.mutable_data());
            refusing_renorm_of_read_only(max_norm.value_or(0.0), [&] {
                call_with_ids(ids, num_embeddings, [&](const auto* id_data) {
                    check_ids(id_data, n, num_embeddings);
                    if (max_norm) {
                        // Written only when writeable; otherwise the kernel reads it and may refuse.
                        renorm_rows(const_cast<S*>(table), num_embeddings, dim, id_data, n, *max_norm,
                                    norm_type, writeable);
                    }
                    copy_table_rows(rows, num_embeddings, dim, id_data, n, destination);
                });
            });
            return result;
        };
        if constexpr (is_reduced_precision<S>) {
            if (out && has_storage<float>(*out)) return copy_into(Tag<float>{}, RowWiden<S>(table, dim));
        }
        return copy_into(Tag<S>{}, RowCopy<S>(TableRows<S>{table, dim}, dim));
    });
}

}  // namespace

void register_gather(py::module_& m) {
    m.def("gather", &gather, py::arg("weight"), py::arg("ids"), py::arg("out") = py::none(),
          py::kw_only(), py::arg("max_norm") = py::none(), py::arg("norm_type") = 2.0);
}

}  // namespace fastembed::bindings
