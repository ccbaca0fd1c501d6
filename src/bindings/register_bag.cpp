#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/bag_args.hpp"
#include "bindings/max_norm.hpp"
#include "bindings/packed.hpp"
#include "bindings/register.hpp"
#include "bindings/sparse_output.hpp"
#include "kernels/bag.hpp"
#include "kernels/bag_backward.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/half.hpp"
#include "kernels/pooling_instances.hpp"
#include "kernels/quantize.hpp"
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

// Pools the bags through `rows` (a row reader, kernels/bag.hpp) into a result of dtype Out: the
// reader's arithmetic type T, or float16 / bfloat16, each element rounded once as it is stored.
// `before_pooling`, if given, runs first, on checked ids: (*before_pooling)(id_data).
template <class Out, class Reader, class BeforePooling = void(const void*)>
py::array pool_into(const Reader& rows, const py::array& ids, const BagLayout& bags, BagMode mode,
                    const typename Reader::value_type* weights, std::int64_t padding,
                    const std::optional<py::array>& out, const std::optional<py::array>& argmax_out,
                    const std::vector<std::pair<const py::array*, const char*>>& inputs,
                    const BeforePooling* before_pooling = nullptr) {
    const std::size_t num_embeddings = rows.num_rows();
    const auto n = static_cast<std::size_t>(ids.size());
    const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(bags.num_bags),
                                         static_cast<py::ssize_t>(rows.dim())};
    py::array result = output_array<Out>(out, shape, inputs);
    std::int64_t* argmax = argmax_data(argmax_out, mode, shape, *inputs.front().first);
    if (argmax_out) require_disjoint(*argmax_out, "argmax_out", result, "out");
    Out* destination = static_cast<Out*>(result.mutable_data());
    // Where nothing but this result is written and every id is in some bag, the ids are checked
    // as they are pooled instead of in a pass of their own; on a bad one the result is dropped
    // and check_ids finds the first for the message.
    const bool check_while_pooling = !out && !argmax_out && !before_pooling && bags.num_bags > 0 &&
                                     bags.num_ids() == n && rows.dim() > 0;
    call_with_ids(ids, num_embeddings, [&](const auto* id_data) {
        if (check_while_pooling) {
            if (!pool_rows_with(rows, id_data, bags, mode, weights, padding, destination, argmax,
                                true)) {
                check_ids(id_data, n, num_embeddings);
            }
            return;
        }
        check_ids(id_data, n, num_embeddings);
        if (before_pooling) (*before_pooling)(id_data);
        pool_rows_with(rows, id_data, bags, mode, weights, padding, destination, argmax);
    });
    return result;
}

// `weight` is a table (float32, float64, float16, bfloat16), or with `quantized_bits` the packed
// rows of a QuantizedTable (python/fastembed/quantized.py). A float16 / bfloat16 table's bags
// come in its dtype, or in float32 into a float32 `out`; a quantized table's in float32.
py::array embedding_bag(const py::array& weight, const py::array& ids, const py::array& bounds,
                        const std::string& mode_name, const std::optional<py::array>& per_sample_weights,
                        long long padding_idx, const std::optional<py::array>& out,
                        const std::optional<py::array>& argmax_out, std::optional<double> max_norm,
                        double norm_type, std::optional<long long> quantized_bits) {
    if (max_norm) require_norm_options(*max_norm, norm_type);
    require_ids(ids);
    const BagMode mode = parse_bag_mode(mode_name);
    const auto n = static_cast<std::size_t>(ids.size());
    const BagLayout bags = bag_layout(bounds, n);
    std::vector<std::pair<const py::array*, const char*>> inputs{
        {&weight, "weight"}, {&ids, "ids"}, {&bounds, "offsets"}};
    if (per_sample_weights) inputs.emplace_back(&*per_sample_weights, "per_sample_weights");
    if (quantized_bits) {
        if (max_norm) throw py::value_error("max_norm renormalises rows in place: a quantized table is read-only");
        return dispatch_bits(*quantized_bits, [&](auto bits_tag) {
            constexpr unsigned Bits = decltype(bits_tag)::value;
            const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
            const QuantizedRows<Bits> rows(static_cast<const std::uint8_t*>(weight.data()),
                                           num_embeddings, packed_dim(weight, Bits));
            const std::int64_t padding = checked_padding_idx(padding_idx, num_embeddings);
            const float* weights = per_sample_weights_data<float>(per_sample_weights, mode, n);
            return pool_into<float>(rows, ids, bags, mode, weights, padding, out,
                                    argmax_out, inputs);
        });
    }
    require_table(weight);
    const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
    const auto dim = static_cast<std::size_t>(weight.shape(1));
    const std::int64_t padding = checked_padding_idx(padding_idx, num_embeddings);
    return dispatch_storage(weight, "weight", [&](auto storage_tag) {
        using S = typename decltype(storage_tag)::type;
        using T = accumulator_t<S>;
        const T* weights = per_sample_weights_data<T>(per_sample_weights, mode, n);
        const S* table = static_cast<const S*>(weight.data());
        const bool writeable = weight.writeable();
        const PlainRows<S> rows(table, num_embeddings, dim);
        const auto renorm = [&](const auto* id_data) {
            renorm_rows(const_cast<S*>(table), num_embeddings, dim, id_data, n, *max_norm,
                        norm_type, writeable);
        };
        // As PyTorch: with max_norm, the looked-up rows (padding included) first, then the pooling.
        const auto* before_pooling = max_norm ? &renorm : nullptr;
        return refusing_renorm_of_read_only(max_norm.value_or(0.0), [&] {
            if constexpr (is_reduced_precision<S>) {
                if (out && has_storage<T>(*out)) {
                    return pool_into<T>(rows, ids, bags, mode, weights, padding, out,
                                        argmax_out, inputs, before_pooling);
                }
            }
            return pool_into<S>(rows, ids, bags, mode, weights, padding, out,
                                argmax_out, inputs, before_pooling);
        });
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
    return dispatch_storage(weight, "weight", [&](auto storage_tag) {
        using W = typename decltype(storage_tag)::type;
        using T = accumulator_t<W>;  // the result's dtype: float32 for a float16 / bfloat16 table
        return dispatch_table_grad<W>(grad_output, weight, [&](auto grad_tag) {
            using S = typename decltype(grad_tag)::type;
            require_layout(grad_output, "grad_output", false);
            py::array_t<T> values(std::vector<py::ssize_t>(ids.shape(), ids.shape() + ids.ndim()));
            const S* grad = static_cast<const S*>(grad_output.data());
            const W* table = static_cast<const W*>(weight.data());
            T* destination = static_cast<T*>(values.mutable_data());
            call_with_ids(ids, num_embeddings, [&](const auto* id_data) {
                bag_per_sample_weights_grad(grad, table, num_embeddings, dim, id_data, n, bags, padding,
                                            destination);
            });
            return py::array(values);
        });
    });
}

// Checks shared by the backward bindings: grad_output (num_bags, dim), C-contiguous (its dtype
// was dispatched on); for max, the forward's argmax of the same shape, every position inside
// its bag.
void require_bag_grad(const py::array& grad_output, const BagLayout& bags, std::size_t dim, BagMode mode,
                      const std::optional<py::array>& argmax) {
    if (grad_output.ndim() != 2 || static_cast<std::size_t>(grad_output.shape(0)) != bags.num_bags ||
        static_cast<std::size_t>(grad_output.shape(1)) != dim) {
        throw py::value_error("grad_output must have shape (num_bags, embedding_dim) = (" +
                              std::to_string(bags.num_bags) + ", " + std::to_string(dim) + "), got " +
                              shape_string(grad_output));
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
    // grad_output of any storage, read in its arithmetic type T (per-sample weights in T too);
    // the gradient comes in grad_output's dtype unless `out` has another of the same arithmetic.
    return dispatch_storage(grad_output, "grad_output", [&](auto storage_tag) -> py::object {
        using S = typename decltype(storage_tag)::type;
        using T = accumulator_t<S>;
        require_bag_grad(grad_output, bags, dim, mode, argmax);
        const T* weights = per_sample_weights_data<T>(per_sample_weights, mode, n);
        const S* grad = static_cast<const S*>(grad_output.data());
        const std::int64_t* arg =
            mode == BagMode::max ? static_cast<const std::int64_t*>(argmax->data()) : nullptr;
        if (sparse) {
            NumpySparseOutput<S> sparse_output;
            call_with_ids(ids, rows, [&](const auto* id_data) {
                embedding_bag_backward_sparse(grad, dim, id_data, n, rows, bags, mode, weights, padding,
                                              scale_grad_by_freq, arg, sparse_output);
            });
            return sparse_output.result();
        }
        // The dense gradient in grad_output's dtype, or rounded once into a float16 or bfloat16
        // `out` (a half-precision table's gradient).
        return dispatch_result<S>(out, [&](auto out_tag) -> py::object {
            using Out = typename decltype(out_tag)::type;
            const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(dim)};
            std::vector<std::pair<const py::array*, const char*>> inputs{{&grad_output, "grad_output"},
                                                                         {&ids, "ids"}};
            if (per_sample_weights) inputs.emplace_back(&*per_sample_weights, "per_sample_weights");
            py::array result = output_array<Out>(out, shape, inputs);
            Out* destination = static_cast<Out*>(result.mutable_data());
            call_with_ids(ids, rows, [&](const auto* id_data) {
                embedding_bag_backward_dense(grad, dim, id_data, n, rows, bags, mode, weights, padding,
                                             scale_grad_by_freq, arg, accumulate, destination);
            });
            return result;
        });
    });
}

}  // namespace

void register_bag(py::module_& m) {
    m.def("embedding_bag", &embedding_bag, py::arg("weight"), py::arg("ids"), py::arg("bounds"),
          py::arg("mode"), py::arg("per_sample_weights") = py::none(), py::arg("padding_idx") = -1,
          py::arg("out") = py::none(), py::arg("argmax_out") = py::none(),
          py::arg("max_norm") = py::none(), py::arg("norm_type") = 2.0,
          py::arg("quantized_bits") = py::none());
    m.def("bag_bounds", &bag_bounds, py::arg("offsets"), py::arg("num_ids"), py::arg("include_last_offset"));
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
