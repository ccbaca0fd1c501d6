// Backward of the pooled lookup: the gradient of every id is the sum, over its occurrences, of
// its bag's output gradient times the weight that occurrence had in the pooling (1 for sum,
// 1 / bag size for mean, the per-sample weight; for max, element d only where that occurrence
// gave the maximum). The rows are produced on the fly by a row source for the sorted-runs
// reduction, so no (N, D) array is ever written; any row sink (dense, row-sparse, optimizer
// update) consumes the sums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/bag.hpp"
#include "kernels/buffer.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/half.hpp"
#include "kernels/reduce.hpp"
#include "kernels/scatter.hpp"
#include "kernels/sparse_grad.hpp"

namespace fastembed {

// Row source (see row_source.hpp) over the entries of a bag backward. Entry k belongs to bag
// bag_of[k]; its row is grad_output[bag] scaled by bag_scale[bag] (mean) or entry_weight[k]
// (per-sample weights), or, for max, masked to the elements whose arg-max is position_of[k].
// grad_output is stored as S and read in S's arithmetic type T (float16 and bfloat16 rows are
// widened as they are read, as GradRows does).
//
// Reading bag_of[k] is a dependent load before every row (the entries come in id order, so k
// jumps about): Bag is uint32_t whenever the bags allow, halving that array's cache footprint.
template <class S, class Bag>
class BagGradRows {
  public:
    using T = accumulator_t<S>;
    using value_type = T;

    BagGradRows(const S* grad_output, std::size_t dim, const Bag* bag_of, const T* bag_scale,
                const T* entry_weight, const std::int64_t* argmax, const std::int64_t* position_of)
        : grad_(grad_output),
          dim_(dim),
          bag_of_(bag_of),
          bag_scale_(bag_scale),
          entry_weight_(entry_weight),
          argmax_(argmax),
          position_of_(position_of) {}

    std::size_t dim() const { return dim_; }
    const void* address(std::size_t k) const { return grad_row(k); }
    const T* direct(std::size_t k) const {
        if constexpr (is_reduced_precision<S>) {
            (void)k;
            return nullptr;
        } else {
            return bag_scale_ == nullptr && entry_weight_ == nullptr && argmax_ == nullptr ? grad_row(k)
                                                                                            : nullptr;
        }
    }
    void load(T* acc, std::size_t k) const {
        apply(k, [acc](std::size_t d, T value) { acc[d] = value; });
    }
    void accumulate(T* acc, std::size_t k) const {
        apply(k, [acc](std::size_t d, T value) { acc[d] += value; });
    }

  private:
    const S* grad_row(std::size_t k) const { return grad_ + static_cast<std::size_t>(bag_of_[k]) * dim_; }

    // Calls put(d, value of element d) for the row of entry k.
    template <class Put>
    void apply(std::size_t k, Put put) const {
        const S* __restrict g = grad_row(k);
        if (argmax_ != nullptr) {
            const std::int64_t* arg = argmax_ + static_cast<std::size_t>(bag_of_[k]) * dim_;
            const std::int64_t position = position_of_[k];
            for (std::size_t d = 0; d < dim_; ++d) {
                put(d, arg[d] == position ? Element<S>::widen(g[d]) : T(0));
            }
            return;
        }
        const T scale = bag_scale_ != nullptr       ? bag_scale_[bag_of_[k]]
                        : entry_weight_ != nullptr ? entry_weight_[k]
                                                   : T(1);
        for (std::size_t d = 0; d < dim_; ++d) put(d, scale * Element<S>::widen(g[d]));
    }

    const S* grad_;
    std::size_t dim_;
    const Bag* bag_of_;
    const T* bag_scale_;
    const T* entry_weight_;
    const std::int64_t* argmax_;
    const std::int64_t* position_of_;
};

// Everything the reduction of a bag backward reads: the ids of its entries and their rows.
// For sum and mean an entry is a position of the ids in a bag; for max only positions that gave
// at least one maximum are entries (the others have no gradient and must not count as touched).
template <class T, class I, class Bag>
struct BagEntries {
    const I* ids = nullptr;
    std::size_t count = 0;
    ScratchArray<Bag> bag_of{0};
    std::vector<T> bag_scale;
    std::vector<I> winner_ids;
    std::vector<std::int64_t> winner_positions;
};

// Builds the entries of a bag backward; `argmax` (num_bags x dim positions, from the forward) is
// required for max. The ids must have passed check_ids.
template <class T, class Bag, class I>
BagEntries<T, I, Bag> bag_entries(const I* ids, std::size_t dim, const BagLayout& bags, BagMode mode,
                                  std::int64_t padding_idx, const std::int64_t* argmax) {
    BagEntries<T, I, Bag> entries;
    if (bags.num_bags == 0) return entries;
    const std::size_t used = bags.end(bags.num_bags - 1);  // ids past the last bag have no gradient
    if (mode == BagMode::max) {
        // A position's flag says it won at least one element; positions of a bag lie inside it,
        // so bags can be flagged in parallel.
        std::vector<unsigned char> won(used, 0);
        parallel_bags(bags, sizeof(I), [&](std::size_t first, std::size_t last) {
            for (std::size_t b = first; b < last; ++b) {
                for (std::size_t d = 0; d < dim; ++d) {
                    const std::int64_t position = argmax[b * dim + d];
                    if (position >= 0) won[static_cast<std::size_t>(position)] = 1;
                }
            }
        });
        std::vector<Bag> winner_bag;
        for (std::size_t b = 0; b < bags.num_bags; ++b) {
            for (std::size_t i = bags.begin(b); i < bags.end(b); ++i) {
                if (!won[i]) continue;
                entries.winner_ids.push_back(ids[i]);
                entries.winner_positions.push_back(static_cast<std::int64_t>(i));
                winner_bag.push_back(static_cast<Bag>(b));
            }
        }
        entries.count = entries.winner_ids.size();
        entries.ids = entries.winner_ids.data();
        entries.bag_of = ScratchArray<Bag>(entries.count);
        std::copy(winner_bag.begin(), winner_bag.end(), entries.bag_of.get());
        return entries;
    }
    entries.ids = ids;
    entries.count = used;
    entries.bag_of = ScratchArray<Bag>(used);
    if (mode == BagMode::mean) entries.bag_scale.assign(bags.num_bags, T(0));
    parallel_bags(bags, sizeof(I) + sizeof(std::size_t), [&](std::size_t first, std::size_t last) {
        for (std::size_t b = first; b < last; ++b) {
            std::size_t size = 0;
            for (std::size_t i = bags.begin(b); i < bags.end(b); ++i) {
                entries.bag_of[i] = static_cast<Bag>(b);
                size += static_cast<std::int64_t>(ids[i]) != padding_idx;
            }
            if (mode == BagMode::mean && size != 0) entries.bag_scale[b] = T(1) / static_cast<T>(size);
        }
    });
    return entries;
}

// Runs reduce_by_id over the entries of a bag backward with `sink` (padding rows are the sink's
// business: their sums are computed and must be ignored). grad_output is stored as S; the
// per-sample weights and the sums are in its arithmetic type T.
template <class S, class I, class Sink, class T = accumulator_t<S>>
void reduce_bag_grad(const S* grad_output, std::size_t dim, const I* ids, std::size_t num_embeddings,
                     const BagLayout& bags, BagMode mode, const T* per_sample_weights,
                     std::int64_t padding_idx, const std::int64_t* argmax, bool visit_absent_ids,
                     Sink& sink) {
    auto reduce = [&](auto bag_tag) {
        using Bag = decltype(bag_tag);
        const BagEntries<T, I, Bag> entries =
            bag_entries<T, Bag>(ids, dim, bags, mode, padding_idx, argmax);
        if (entries.count == 0 && !visit_absent_ids) {
            if constexpr (counts_distinct_ids<Sink>::value) sink.start({});  // an empty result
            return;
        }
        const BagGradRows<S, Bag> source(grad_output, dim, entries.bag_of.get(),
                                         entries.bag_scale.empty() ? nullptr : entries.bag_scale.data(),
                                         mode == BagMode::sum ? per_sample_weights : nullptr,
                                         mode == BagMode::max ? argmax : nullptr,
                                         entries.winner_positions.data());
        reduce_by_id(entries.ids, entries.count, num_embeddings, source, visit_absent_ids, sink);
    };
    if (bags.num_bags <= std::numeric_limits<std::uint32_t>::max()) {
        reduce(std::uint32_t{});
    } else {
        reduce(std::uint64_t{});
    }
}

inline GradOptions bag_grad_options(std::int64_t padding_idx, bool scale_grad_by_freq) {
    GradOptions options;
    if (padding_idx >= 0) options.padding_idx = static_cast<std::uint64_t>(padding_idx);
    options.scale_grad_by_freq = scale_grad_by_freq;
    return options;
}

// Dense gradient w.r.t. the table, (num_embeddings, dim): every row written once, or, with
// `accumulate`, each touched row's gradient added into `out` (other rows left as they are).
// grad_output and `out` may be stored in less precision than T computes in (float16 or bfloat16
// for float32).
template <class S, class I, class Out, class T = accumulator_t<S>>
void embedding_bag_backward_dense(const S* grad_output, std::size_t dim, const I* ids, std::size_t n,
                                  std::size_t num_embeddings, const BagLayout& bags, BagMode mode,
                                  const T* per_sample_weights, std::int64_t padding_idx,
                                  bool scale_grad_by_freq, const std::int64_t* argmax,
                                  bool accumulate, Out* out) {
    check_ids(ids, n, num_embeddings);
    if (dim == 0 || num_embeddings == 0) return;
    GradOptions options = bag_grad_options(padding_idx, scale_grad_by_freq);
    options.accumulate = accumulate;
    DenseRowSink<Out> sink(out, num_embeddings, dim, options);
    reduce_bag_grad(grad_output, dim, ids, num_embeddings, bags, mode, per_sample_weights, padding_idx,
                    argmax, !accumulate, sink);
}

// Row-sparse gradient: the ids with a gradient (sorted, padding left out) and their rows, in
// memory from `output` (see SparseRowSink); returns the number of rows.
template <class S, class I, class Output, class T = accumulator_t<S>>
std::size_t embedding_bag_backward_sparse(const S* grad_output, std::size_t dim, const I* ids,
                                          std::size_t n, std::size_t num_embeddings,
                                          const BagLayout& bags, BagMode mode,
                                          const T* per_sample_weights, std::int64_t padding_idx,
                                          bool scale_grad_by_freq, const std::int64_t* argmax,
                                          Output& output) {
    check_ids(ids, n, num_embeddings);
    using Out = std::remove_pointer_t<decltype(output.values(0, 0))>;
    SparseRowSink<Out, Output> sink(dim, bag_grad_options(padding_idx, scale_grad_by_freq), output);
    reduce_bag_grad(grad_output, dim, ids, num_embeddings, bags, mode, per_sample_weights, padding_idx,
                    argmax, false, sink);
    return sink.rows();
}

}  // namespace fastembed
