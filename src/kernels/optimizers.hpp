// Fused sparse optimizer updates: each id's gradient, summed over its occurrences by the
// sorted-runs reduction, updates that id's row of the table and of the optimizer state right
// away, so a training step never writes a gradient array at all. Only touched rows change
// ("lazy" updates, as PyTorch's optimizers on sparse gradients).
//
// Each update is a functor update(id, g) on one row (g in the table's arithmetic type, its
// `T`); rows of one part of the reduction are
// disjoint from every other part's, so updates need no locks, and each row's arithmetic depends
// only on its own sum, so results are identical for any thread count.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/grad_options.hpp"
#include "kernels/half.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// Every update reads the table (storage W: float32, float64, float16 or bfloat16) in its
// arithmetic type T, keeps its state in T, and writes each new value once through a
// RowRounder (to nearest, or stochastically for float16 / bfloat16 tables).

// w -= lr * g; with momentum, buf = momentum * buf + g and w -= lr * buf (PyTorch's SGD with
// dampening 0, applied to touched rows only).
template <class W>
struct SgdUpdate {
    using T = accumulator_t<W>;
    W* weight;
    T* momentum_buffer;  // null when momentum == 0
    std::size_t dim;
    T lr;
    T momentum;
    Rounding rounding;

    void prefetch(std::uint64_t id) const {
        prefetch_row(weight + id * dim, dim * sizeof(W));
        if (momentum_buffer != nullptr) prefetch_row(momentum_buffer + id * dim, dim * sizeof(T));
    }

    void operator()(std::uint64_t id, const T* __restrict g) const {
        W* __restrict w = weight + id * dim;
        const RowRounder<W> round(rounding, id);
        if (momentum_buffer == nullptr) {
            for (std::size_t d = 0; d < dim; ++d) w[d] = round(Element<W>::widen(w[d]) - lr * g[d], d);
            return;
        }
        T* __restrict buf = momentum_buffer + id * dim;
        for (std::size_t d = 0; d < dim; ++d) {
            buf[d] = momentum * buf[d] + g[d];
            w[d] = round(Element<W>::widen(w[d]) - lr * buf[d], d);
        }
    }
};

// Adagrad as PyTorch applies it to sparse gradients: state += g^2; w -= lr * g / (sqrt(state) + eps).
// Row-wise (FBGEMM, TorchRec): one accumulator per row, state[id] += mean(g^2).
template <class W>
struct AdagradUpdate {
    using T = accumulator_t<W>;
    W* weight;
    T* state_sum;  // (V, dim), or (V,) when row-wise
    std::size_t dim;
    T lr;
    T eps;
    bool rowwise;
    Rounding rounding;

    void prefetch(std::uint64_t id) const {
        prefetch_row(weight + id * dim, dim * sizeof(W));
        if (rowwise) {
            prefetch_read(state_sum + id);
        } else {
            prefetch_row(state_sum + id * dim, dim * sizeof(T));
        }
    }

    void operator()(std::uint64_t id, const T* __restrict g) const {
        W* __restrict w = weight + id * dim;
        const RowRounder<W> round(rounding, id);
        if (rowwise) {
            T squares = 0;
            for (std::size_t d = 0; d < dim; ++d) squares += g[d] * g[d];
            T& acc = state_sum[id];
            acc += dim == 0 ? T(0) : squares / static_cast<T>(dim);
            const T denom = std::sqrt(acc) + eps;
            for (std::size_t d = 0; d < dim; ++d) w[d] = round(Element<W>::widen(w[d]) - lr * (g[d] / denom), d);
            return;
        }
        T* __restrict s = state_sum + id * dim;
        for (std::size_t d = 0; d < dim; ++d) {
            s[d] += g[d] * g[d];
            w[d] = round(Element<W>::widen(w[d]) - lr * (g[d] / (std::sqrt(s[d]) + eps)), d);
        }
    }
};

// PyTorch's SparseAdam: the moments of touched rows move toward g and g^2; the bias correction
// uses the optimizer's global step, folded into step_size = lr * sqrt(1 - b2^t) / (1 - b1^t).
template <class W>
struct AdamUpdate {
    using T = accumulator_t<W>;
    W* weight;
    T* exp_avg;
    T* exp_avg_sq;
    std::size_t dim;
    T beta1;
    T beta2;
    T eps;
    T step_size;
    Rounding rounding;

    void prefetch(std::uint64_t id) const {
        prefetch_row(weight + id * dim, dim * sizeof(W));
        prefetch_row(exp_avg + id * dim, dim * sizeof(T));
        prefetch_row(exp_avg_sq + id * dim, dim * sizeof(T));
    }

    void operator()(std::uint64_t id, const T* __restrict g) const {
        W* __restrict w = weight + id * dim;
        T* __restrict m = exp_avg + id * dim;
        T* __restrict v = exp_avg_sq + id * dim;
        const RowRounder<W> round(rounding, id);
        for (std::size_t d = 0; d < dim; ++d) {
            m[d] += (g[d] - m[d]) * (T(1) - beta1);
            v[d] += (g[d] * g[d] - v[d]) * (T(1) - beta2);
            w[d] = round(Element<W>::widen(w[d]) - step_size * (m[d] / (std::sqrt(v[d]) + eps)), d);
        }
    }
};

// Row sink that applies an update to every occurring id except the padding row, with the
// gradient divided by the id's count when options.scale_grad_by_freq.
//
// The rows an update touches (table and state) are cold: the reduction prefetches the gradient
// rows it sums, but nothing prefetches these. So each part runs a short software pipeline: a row
// sum is copied into the part's ring, its rows are prefetched, and it is applied kDepth rows
// later (finish_part drains the rest). Every row still gets exactly its own update, so results
// do not depend on the pipeline. The sink declares counts_distinct_ids only to be told, by
// start(), how many parts there are before any row arrives.
template <class T, class Update>
class UpdateSink {
  public:
    static constexpr bool counts_distinct_ids = true;

    UpdateSink(const Update& update, std::size_t dim, const GradOptions& options)
        : update_(update), dim_(dim), options_(options) {}

    std::uint64_t uncounted_id() const { return options_.padding_idx; }

    void start(const std::vector<std::size_t>& distinct_in_part) {
        pipes_.clear();
        pipes_.resize(distinct_in_part.size());
        for (Pipe& pipe : pipes_) pipe.sums.resize(kDepth * dim_);
    }

    void row(std::size_t part, std::uint64_t id, const T* sum, std::size_t count) {
        if (count == 0 || options_.is_padding(id)) return;
        Pipe& pipe = pipes_[part];
        const std::size_t slot = pipe.queued % kDepth;
        if (pipe.queued >= kDepth) apply(pipe, slot);  // the oldest row holds this slot
        T* held = pipe.sums.data() + slot * dim_;
        const bool scale = options_.scale_grad_by_freq && count > 1;
        for (std::size_t d = 0; d < dim_; ++d) held[d] = scale ? sum[d] / static_cast<T>(count) : sum[d];
        pipe.ids[slot] = id;
        update_.prefetch(id);
        ++pipe.queued;
    }

    void finish_part(std::size_t part) {
        if (part >= pipes_.size()) return;  // no row was handed to this part
        Pipe& pipe = pipes_[part];
        const std::size_t first = pipe.queued > kDepth ? pipe.queued - kDepth : 0;
        for (std::size_t k = first; k < pipe.queued; ++k) apply(pipe, k % kDepth);
        pipe.queued = 0;
    }

  private:
    static constexpr std::size_t kDepth = 8;

    struct alignas(64) Pipe {  // one per part; aligned so parts never share a cache line
        std::vector<T> sums;
        std::uint64_t ids[kDepth] = {};
        std::size_t queued = 0;
    };

    void apply(const Pipe& pipe, std::size_t slot) const {
        update_(pipe.ids[slot], pipe.sums.data() + slot * dim_);
    }

    Update update_;
    std::size_t dim_;
    GradOptions options_;
    std::vector<Pipe> pipes_;
};

}  // namespace fastembed
