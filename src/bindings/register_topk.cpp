#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/blas_product.hpp"
#include "kernels/topk.hpp"

namespace fastembed::bindings {

namespace {

TopkMetric parse_metric(const std::string& metric) {
    if (metric == "cosine") return TopkMetric::cosine;
    if (metric == "dot") return TopkMetric::dot;
    throw py::value_error("metric must be 'cosine' or 'dot', got '" + metric + "'");
}

// IndexError for the first exclude id outside [-1, num_rows), naming it and its position.
void check_exclude(const py::array& exclude, std::size_t num_rows) {
    const auto* ids = static_cast<const std::int64_t*>(exclude.data());
    const auto width = static_cast<std::size_t>(exclude.shape(1));
    for (std::size_t i = 0; i < static_cast<std::size_t>(exclude.size()); ++i) {
        if (ids[i] < -1 || ids[i] >= static_cast<std::int64_t>(num_rows)) {
            throw py::index_error("exclude id " + std::to_string(ids[i]) + " at exclude[" +
                                  std::to_string(i / width) + ", " + std::to_string(i % width) +
                                  "] is out of range for a table of " + std::to_string(num_rows) +
                                  " rows (valid: -1 for none, 0.." + std::to_string(num_rows - 1) +
                                  ")");
        }
    }
}

// (ids, scores): see python/fastembed/_topk.py, which converts the arguments.
py::tuple topk(const py::array& table, const py::array& queries, long long k,
               const std::string& metric, const std::optional<py::array>& exclude,
               const std::optional<py::array>& ids_out, const std::optional<py::array>& scores_out) {
    const TopkMetric parsed_metric = parse_metric(metric);
    if (table.ndim() != 2) {
        throw py::value_error("table must be 2-d (num_rows, dim), got shape " + shape_string(table));
    }
    if (queries.ndim() != 2) {
        throw py::value_error("queries must be 2-d (num_queries, dim), got shape " +
                              shape_string(queries));
    }
    const auto num_rows = static_cast<std::size_t>(table.shape(0));
    const auto dim = static_cast<std::size_t>(table.shape(1));
    const auto num_queries = static_cast<std::size_t>(queries.shape(0));
    if (static_cast<std::size_t>(queries.shape(1)) != dim) {
        throw py::value_error("queries must have the table's width " + std::to_string(dim) +
                              ", got shape " + shape_string(queries));
    }
    if (dim > static_cast<std::size_t>(INT_MAX)) {
        throw py::value_error("dim " + std::to_string(dim) + " exceeds the BLAS limit of 2^31 - 1");
    }
    if (k < 1 || static_cast<unsigned long long>(k) > num_rows) {
        throw py::value_error("k must be in 1.." + std::to_string(num_rows) +
                              " (the table's rows), got " + std::to_string(k));
    }
    std::size_t num_excluded = 0;
    if (exclude) {
        if (!py::isinstance<py::array_t<std::int64_t>>(*exclude)) {
            throw py::type_error("exclude must be int64, got " + dtype_name(*exclude));
        }
        if (exclude->ndim() != 2 || static_cast<std::size_t>(exclude->shape(0)) != num_queries) {
            throw py::value_error("exclude must have shape (" + std::to_string(num_queries) +
                                  ", m), got " + shape_string(*exclude));
        }
        require_layout(*exclude, "exclude", false);
        num_excluded = static_cast<std::size_t>(exclude->shape(1));
        if (num_excluded > 0) check_exclude(*exclude, num_rows);
    }
    return dispatch_float(table, "table", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_layout(table, "table", false);
        require_dtype<T>(queries, "queries", "table");
        require_layout(queries, "queries", false);
        const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(num_queries),
                                             static_cast<py::ssize_t>(k)};
        std::vector<std::pair<const py::array*, const char*>> inputs{{&table, "table"},
                                                                     {&queries, "queries"}};
        if (exclude) inputs.emplace_back(&*exclude, "exclude");
        py::array ids = output_array<std::int64_t>(ids_out, shape, inputs);
        inputs.emplace_back(&ids, "the ids output");
        py::array scores = output_array<T>(scores_out, shape, inputs);
        const auto* table_data = static_cast<const T*>(table.data());
        const auto* query_data = static_cast<const T*>(queries.data());
        const auto* exclude_data =
            num_excluded > 0 ? static_cast<const std::int64_t*>(exclude->data()) : nullptr;
        auto* id_data = static_cast<std::int64_t*>(ids.mutable_data());
        auto* score_data = static_cast<T*>(scores.mutable_data());
        {
            py::gil_scoped_release release;
            topk_search(table_data, num_rows, dim, query_data, num_queries,
                        static_cast<std::size_t>(k), parsed_metric, exclude_data, num_excluded,
                        id_data, score_data, BlasProduct{});
        }
        return py::make_tuple(ids, scores);
    });
}

}  // namespace

void register_topk(py::module_& m) {
    use_single_threaded_blas();
    m.def("topk", &topk, py::arg("table"), py::arg("queries"), py::arg("k"), py::arg("metric"),
          py::arg("exclude") = py::none(), py::arg("ids_out") = py::none(),
          py::arg("scores_out") = py::none());
}

}  // namespace fastembed::bindings
