#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/bag_args.hpp"
#include "bindings/max_norm.hpp"
#include "bindings/register.hpp"
#include "bindings/sparse_output.hpp"
#include "kernels/bag.hpp"
#include "kernels/bag_backward.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/renorm.hpp"

namespace fastembed::bindings {

namespace {

void require_table(const py::array& weight) {
    if (weight.ndim() != 2) {
        throw py::value_error("weight must be 2-d (num_embeddings, embedding_dim), got shape " +
                              shape_string(weight));
    }
    require_layout(weight, "weight", false);
}

// argmax_out: (num_bags, embedding_dim) int64, written with the position of each maximum.
std::int64_t* argmax_data(const std::optional<py::array>& argmax_out, BagMode mode,
                          const std::vector<py::ssize_t>& shape, const py::array& weight) {
    if (!argmax_out) return nullptr;
    if (mode != BagMode::max) throw py::value_error("argmax_out is only written with mode='max'");
    py::array given = *argmax_out;  // a new handle to the same array
    if (!py::isinstance<py::array_t<std::int64_t>>(given) || given.ndim() != 2 ||
        given.shape(0) != shape[0] || given.shape(1) != shape[1]) {
        throw py::value_error("argmax_out must be an int64 array of shape (num_bags, embedding_dim)");
    }
    require_layout(given, "argmax_out", true);
    require_disjoint(given, "argmax_out", weight, "weight");
    return static_cast<std::int64_t*>(given.mutable_data());
}

py::array embedding_bag(const py::array& weight, const py::array& ids, const py::array& bounds,
                        const std::string& mode_name, const std::optional<py::array>& per_sample_weights,
                        long long padding_idx, const std::optional<py::array>& out,
                        const std::optional<py::array>& argmax_out, std::optional<double> max_norm,
                        double norm_type) {
    if (max_norm) require_norm_options(*max_norm, norm_type);
    require_table(weight);
    require_ids(ids);
    const BagMode mode = parse_bag_mode(mode_name);
    const auto n = static_cast<std::size_t>(ids.size());
    const BagLayout bags = bag_layout(bounds, n);
    const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
    const auto dim = static_cast<std::size_t>(weight.shape(1));
    const std::int64_t padding = checked_padding_idx(padding_idx, num_embeddings);
    return dispatch_float(weight, "weight", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        const T* weights = per_sample_weights_data<T>(per_sample_weights, mode, n);
        const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(bags.num_bags),
                                             static_cast<py::ssize_t>(dim)};
        std::vector<std::pair<const py::array*, const char*>> inputs{
            {&weight, "weight"}, {&ids, "ids"}, {&bounds, "offsets"}};
        if (per_sample_weights) inputs.emplace_back(&*per_sample_weights, "per_sample_weights");
        py::array result = output_array<T>(out, shape, inputs);
        std::int64_t* argmax = argmax_data(argmax_out, mode, shape, weight);
        if (argmax_out) require_disjoint(*argmax_out, "argmax_out", result, "out");
        const T* table = static_cast<const T*>(weight.data());
        const bool writeable = weight.writeable();
        T* destination = static_cast<T*>(result.mutable_data());
        refusing_renorm_of_read_only(max_norm.value_or(0.0), [&] {
            call_with_ids(ids, num_embeddings, [&](const auto* id_data) {
                check_ids(id_data, n, num_embeddings);
                if (max_norm) {
                    // As PyTorch: the looked-up rows (padding included) first, then the pooling.
                    renorm_rows(const_cast<T*>(table), num_embeddings, dim, id_data, n, *max_norm,
                                norm_type, writeable);
                }
                pool_rows(table, dim, id_data, bags, mode, weights, padding, destination, argmax);
            });
        });
        return result;
    });
}

py::array per_sample_weights_backward(const py::array& grad_output, const py::array& weight,
                                      const py::array& ids, const py::array& bounds,
                                      long long padding_idx) {
    require_table(weight);
    require_ids(ids);
    const auto n = static_cast<std::size_t>(ids.size());
    const BagLayout bags = bag_layout(bounds, n);
    const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
    const auto dim = static_cast<std::size_t>(weight.shape(1));
    const std::int64_t padding = checked_padding_idx(padding_idx, num_embeddings);
    if (grad_output.ndim() != 2 || static_cast<std::size_t>(grad_output.shape(0)) != bags.num_bags ||
        static_cast<std::size_t>(grad_output.shape(1)) != dim) {
        throw py::value_error("grad_output must have shape (num_bags, embedding_dim) = (" +
                              std::to_string(bags.num_bags) + ", " + std::to_string(dim) + "), got " +
                              shape_string(grad_output));
    }
    return dispatch_float(weight, "weight", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_dtype<T>(grad_output, "grad_output", "weight");
        require_layout(grad_output, "grad_output", false);
        py::array_t<T> result(std::vector<py::ssize_t>(ids.shape(), ids.shape() + ids.ndim()));
        const T* grad = static_cast<const T*>(grad_output.data());
        const T* table = static_cast<const T*>(weight.data());
        T* destination = static_cast<T*>(result.mutable_data());
        call_with_ids(ids, num_embeddings, [&](const auto* id_data) {
            bag_per_sample_weights_grad(grad, table, num_embeddings, dim, id_data, n, bags, padding,
                                        destination);
        });
        return py::array(result);
    });
}

// Checks shared by the backward bindings: grad_output (num_bags, dim) of dtype T, C-contiguous;
// for max, the forward's argmax of the same shape, every position inside its bag.
template <class T>
void require_bag_grad(const py::array& grad_output, const BagLayout& bags, std::size_t dim, BagMode mode,
                      const std::optional<py::array>& argmax) {
    if (grad_output.ndim() != 2 || static_cast<std::size_t>(grad_output.shape(0)) != bags.num_bags ||
        static_cast<std::size_t>(grad_output.shape(1)) != dim) {
        throw py::value_error("grad_output must have shape (num_bags, embedding_dim) = (" +
                              std::to_string(bags.num_bags) + ", " + std::to_string(dim) + "), got " +
                              shape_string(grad_output));
    }
    if (!py::isinstance<py::array_t<T>>(grad_output)) {
        throw py::type_error("grad_output must be float32 or float64, got " + dtype_name(grad_output));
    }
    require_layout(grad_output, "grad_output", false);
    if (mode == BagMode::max) checked_argmax(argmax, bags, dim);
}

// Dense gradient (an array, into `out` if given; added into it with `accumulate`), or with
// `sparse` the row-sparse one as a tuple (indices, values) that python/fastembed/sparse.py wraps.
py::object embedding_bag_backward(const py::array& grad_output, const py::array& ids, const py::array& bounds,
                                  long long num_embeddings, const std::string& mode_name,
                                  const std::optional<py::array>& per_sample_weights, long long padding_idx,
                                  const std::optional<py::array>& argmax, const std::optional<py::array>& out,
                                  bool sparse, bool accumulate, bool scale_grad_by_freq) {
    require_num_embeddings(num_embeddings);
    require_ids(ids);
    const BagMode mode = parse_bag_mode(mode_name);
    const auto n = static_cast<std::size_t>(ids.size());
    const BagLayout bags = bag_layout(bounds, n);
    const auto rows = static_cast<std::size_t>(num_embeddings);
    const std::int64_t padding = checked_padding_idx(padding_idx, rows);
    if (grad_output.ndim() != 2) {
        throw py::value_error("grad_output must be 2-d (num_bags, embedding_dim), got shape " +
                              shape_string(grad_output));
    }
    if (sparse && out) throw py::value_error("out is for the dense gradient only");
    if (accumulate && !out) throw py::value_error("accumulate needs out");
    if (scale_grad_by_freq && mode == BagMode::max) {
        throw py::value_error("scale_grad_by_freq is not supported with mode='max'");
    }
    const auto dim = static_cast<std::size_t>(grad_output.shape(1));
    return dispatch_float(grad_output, "grad_output", [&](auto float_tag) -> py::object {
        using T = typename decltype(float_tag)::type;
        require_bag_grad<T>(grad_output, bags, dim, mode, argmax);
        const T* weights = per_sample_weights_data<T>(per_sample_weights, mode, n);
        const T* grad = static_cast<const T*>(grad_output.data());
        const std::int64_t* arg =
            mode == BagMode::max ? static_cast<const std::int64_t*>(argmax->data()) : nullptr;
        std::optional<py::array> result;
        NumpySparseOutput<T> sparse_output;
        if (!sparse) {
            const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(dim)};
            std::vector<std::pair<const py::array*, const char*>> inputs{{&grad_output, "grad_output"},
                                                                         {&ids, "ids"}};
            if (per_sample_weights) inputs.emplace_back(&*per_sample_weights, "per_sample_weights");
            result = output_array<T>(out, shape, inputs);
        }
        call_with_ids(ids, rows, [&](const auto* id_data) {
            if (sparse) {
                embedding_bag_backward_sparse(grad, dim, id_data, n, rows, bags, mode, weights, padding,
                                              scale_grad_by_freq, arg, sparse_output);
            } else {
                embedding_bag_backward_dense(grad, dim, id_data, n, rows, bags, mode, weights, padding,
                                             scale_grad_by_freq, arg, accumulate,
                                             static_cast<T*>(result->mutable_data()));
            }
        });
        if (sparse) return sparse_output.result();
        return *result;
    });
}

}  // namespace

void register_bag(py::module_& m) {
    m.def("embedding_bag", &embedding_bag, py::arg("weight"), py::arg("ids"), py::arg("bounds"),
          py::arg("mode"), py::arg("per_sample_weights") = py::none(), py::arg("padding_idx") = -1,
          py::arg("out") = py::none(), py::arg("argmax_out") = py::none(), py::kw_only(),
          py::arg("max_norm") = py::none(), py::arg("norm_type") = 2.0);
    m.def("embedding_bag_per_sample_weights_backward", &per_sample_weights_backward,
          py::arg("grad_output"), py::arg("weight"), py::arg("ids"), py::arg("bounds"),
          py::arg("padding_idx") = -1);
    m.def("embedding_bag_backward", &embedding_bag_backward, py::arg("grad_output"), py::arg("ids"),
          py::arg("bounds"), py::arg("num_embeddings"), py::arg("mode"),
          py::arg("per_sample_weights") = py::none(), py::arg("padding_idx") = -1,
          py::arg("argmax") = py::none(), py::arg("out") = py::none(), py::arg("sparse") = false,
          py::arg("accumulate") = false, py::arg("scale_grad_by_freq") = false);
}

}  // namespace fastembed::bindings
