// Fused sparse optimizer steps: reduce a lookup's gradient by id and update the touched rows of
// the table and the optimizer state in the same pass (kernels/optimizers.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/bag_args.hpp"
#include "bindings/register.hpp"
#include "kernels/bag_backward.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/half.hpp"
#include "kernels/optimizers.hpp"
#include "kernels/reduce.hpp"

namespace fastembed::bindings {

namespace {

// The gradient of the last lookup, as the Python layer describes it:
// (grad_output, ids, bounds, mode, per_sample_weights, argmax, padding_idx, scale_grad_by_freq).
// bounds is None for a plain lookup (grad_output of shape ids.shape + (D,)); otherwise the lookup
// was a bag (grad_output (num_bags, D)), pooled with `mode`.
using Gradient = std::tuple<py::array, py::array, std::optional<py::array>, std::string,
                            std::optional<py::array>, std::optional<py::array>, long long, bool>;

// Checks the table and the gradient, then calls run(Tag<T>, apply) where apply(update) reduces the
// gradient and hands each touched row to `update`. `run` checks the optimizer state and must call
// apply last: everything that can fail has failed before a single row is written.
template <class Run>
void with_gradient(const py::array& weight, const Gradient& gradient, Run&& run) {
    const auto& [grad_output, ids, bounds, mode_name, per_sample_weights, argmax, padding_idx,
                 scale_grad_by_freq] = gradient;
    if (weight.ndim() != 2) {
        throw py::value_error("weight must be 2-d (num_embeddings, embedding_dim), got shape " +
                              shape_string(weight));
    }
    require_layout(weight, "weight", true);
    require_disjoint(weight, "weight", grad_output, "grad_output");
    require_ids(ids);
    const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
    const auto dim = static_cast<std::size_t>(weight.shape(1));
    const auto n = static_cast<std::size_t>(ids.size());
    const std::int64_t padding = checked_padding_idx(padding_idx, num_embeddings);
    const GradOptions options = bag_grad_options(padding, scale_grad_by_freq);
    const BagMode mode = parse_bag_mode(mode_name);
    std::optional<BagLayout> bags;
    if (bounds) {
        bags = bag_layout(*bounds, n);
        if (grad_output.ndim() != 2 || static_cast<std::size_t>(grad_output.shape(0)) != bags->num_bags ||
            static_cast<std::size_t>(grad_output.shape(1)) != dim) {
            throw py::value_error("grad_output must have shape (num_bags, embedding_dim) = (" +
                                  std::to_string(bags->num_bags) + ", " + std::to_string(dim) +
                                  "), got " + shape_string(grad_output));
        }
        if (mode == BagMode::max) checked_argmax(argmax, *bags, dim);
    } else {
        require_grad_shape(grad_output, ids);
        if (static_cast<std::size_t>(grad_output.shape(grad_output.ndim() - 1)) != dim) {
            throw py::value_error("grad_output must end in embedding_dim=" + std::to_string(dim) +
                                  ", got shape " + shape_string(grad_output));
        }
    }
    dispatch_storage(weight, "weight", [&](auto table_tag) {
        using W = typename decltype(table_tag)::type;
        using T = accumulator_t<W>;
        // The gradient: the table's dtype, or its arithmetic type (float32 for a float16 or
        // bfloat16 table). A bag's gradient rows are scaled as they are read, in T.
        auto with_grad = [&](auto grad_tag) {
            using S = typename decltype(grad_tag)::type;
            require_layout(grad_output, "grad_output", false);
            const T* weights = bags ? per_sample_weights_data<T>(per_sample_weights, mode, n) : nullptr;
            const S* grad = static_cast<const S*>(grad_output.data());
            const bool max = bags && mode == BagMode::max;
            const std::int64_t* arg = max ? static_cast<const std::int64_t*>(argmax->data()) : nullptr;
            dispatch_ids(ids, [&](auto id_tag) {
                using I = typename decltype(id_tag)::type;
                const I* id_data = static_cast<const I*>(ids.data());
                try {
                    check_ids(id_data, n, num_embeddings);
                } catch (const IdOutOfRange& e) {
                    throw py::index_error(id_error_message(ids, e.position, e.id, num_embeddings));
                }
                run(table_tag, [&](const auto& update) {
                    if (dim == 0) return;
                    using Update = std::decay_t<decltype(update)>;
                    UpdateSink<T, Update> sink(update, dim, options);
                    py::gil_scoped_release release;
                    if (bags) {
                        reduce_bag_grad(grad, dim, id_data, num_embeddings, *bags, mode, weights, padding,
                                        arg, false, sink);
                    } else {
                        reduce_by_id(id_data, n, num_embeddings, grad, dim, false, sink);
                    }
                });
            });
        };
        dispatch_table_grad<W>(grad_output, weight, with_grad);
    });
}

// An optimizer state array: the table's arithmetic dtype T (float32 for float16 and bfloat16
// tables) and `shape`, C-contiguous, writeable, apart from the table and the gradient.
template <class T>
T* state_data(const py::array& state, const char* name, const std::vector<py::ssize_t>& shape,
              const py::array& weight, const Gradient& gradient) {
    if (!py::isinstance<py::array_t<T>>(state)) {
        throw py::type_error(std::string(name) + " must be " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + dtype_name(state));
    }
    if (std::vector<py::ssize_t>(state.shape(), state.shape() + state.ndim()) != shape) {
        throw py::value_error(std::string(name) + " has shape " + shape_string(state) +
                              ", which does not match the table");
    }
    require_layout(state, name, true);
    require_disjoint(state, name, weight, "weight");
    require_disjoint(state, name, std::get<0>(gradient), "grad_output");
    py::array writable = state;  // a new handle to the same array
    return static_cast<T*>(writable.mutable_data());
}

std::vector<py::ssize_t> table_shape(const py::array& weight) {
    return {weight.shape(0), weight.shape(1)};
}

template <class W>
W* table_data(const py::array& weight) {
    py::array writable = weight;
    return static_cast<W*>(writable.mutable_data());
}

// How updated values are written: (stochastic, seed, step) from the Python optimizer.
using RoundingArgs = std::tuple<bool, std::uint64_t, std::uint64_t>;

Rounding rounding_of(const RoundingArgs& args) {
    return Rounding{std::get<0>(args), std::get<1>(args), std::get<2>(args)};
}

void sgd_update(const py::array& weight, const Gradient& gradient, double lr, double momentum,
                const std::optional<py::array>& momentum_buffer, const RoundingArgs& rounding) {
    if (momentum != 0 && !momentum_buffer) throw py::value_error("momentum needs a momentum_buffer");
    with_gradient(weight, gradient, [&](auto table_tag, auto&& apply) {
        using W = typename decltype(table_tag)::type;
        using T = accumulator_t<W>;
        T* buffer = momentum != 0 ? state_data<T>(*momentum_buffer, "momentum_buffer",
                                                  table_shape(weight), weight, gradient)
                                  : nullptr;
        apply(SgdUpdate<W>{table_data<W>(weight), buffer, static_cast<std::size_t>(weight.shape(1)),
                           static_cast<T>(lr), static_cast<T>(momentum), rounding_of(rounding)});
    });
}

void adagrad_update(const py::array& weight, const Gradient& gradient, double lr, double eps,
                    bool rowwise, const py::array& state_sum, const RoundingArgs& rounding) {
    with_gradient(weight, gradient, [&](auto table_tag, auto&& apply) {
        using W = typename decltype(table_tag)::type;
        using T = accumulator_t<W>;
        const std::vector<py::ssize_t> shape =
            rowwise ? std::vector<py::ssize_t>{weight.shape(0)} : table_shape(weight);
        T* sums = state_data<T>(state_sum, "state_sum", shape, weight, gradient);
        apply(AdagradUpdate<W>{table_data<W>(weight), sums, static_cast<std::size_t>(weight.shape(1)),
                               static_cast<T>(lr), static_cast<T>(eps), rowwise, rounding_of(rounding)});
    });
}

void adam_update(const py::array& weight, const Gradient& gradient, double step_size, double beta1,
                 double beta2, double eps, const py::array& exp_avg, const py::array& exp_avg_sq,
                 const RoundingArgs& rounding) {
    require_disjoint(exp_avg, "exp_avg", exp_avg_sq, "exp_avg_sq");
    with_gradient(weight, gradient, [&](auto table_tag, auto&& apply) {
        using W = typename decltype(table_tag)::type;
        using T = accumulator_t<W>;
        const auto shape = table_shape(weight);
        T* m = state_data<T>(exp_avg, "exp_avg", shape, weight, gradient);
        T* v = state_data<T>(exp_avg_sq, "exp_avg_sq", shape, weight, gradient);
        apply(AdamUpdate<W>{table_data<W>(weight), m, v, static_cast<std::size_t>(weight.shape(1)),
                            static_cast<T>(beta1), static_cast<T>(beta2), static_cast<T>(eps),
                            static_cast<T>(step_size), rounding_of(rounding)});
    });
}

}  // namespace

void register_optim(py::module_& m) {
    const RoundingArgs nearest{false, 0, 0};
    m.def("sgd_update", &sgd_update, py::arg("weight"), py::arg("gradient"), py::arg("lr"),
          py::arg("momentum"), py::arg("momentum_buffer") = py::none(), py::arg("rounding") = nearest);
    m.def("adagrad_update", &adagrad_update, py::arg("weight"), py::arg("gradient"), py::arg("lr"),
          py::arg("eps"), py::arg("rowwise"), py::arg("state_sum"), py::arg("rounding") = nearest);
    m.def("adam_update", &adam_update, py::arg("weight"), py::arg("gradient"), py::arg("step_size"),
          py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("exp_avg"),
          py::arg("exp_avg_sq"), py::arg("rounding") = nearest);
}

}  // namespace fastembed::bindings
