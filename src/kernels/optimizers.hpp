// Fused sparse optimizer updates: each id's gradient, summed over its occurrences by the
// sorted-runs reduction, updates that id's row of the table and of the optimizer state right
// away, so a training step never writes a gradient array at all. Only touched rows change
// ("lazy" updates, as PyTorch's optimizers on sparse gradients).
//
// Each update is a functor update(id, g) on one row; rows of one part of the reduction are
// disjoint from every other part's, so updates need no locks, and each row's arithmetic depends
// only on its own sum, so results are identical for any thread count.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/grad_options.hpp"

namespace fastembed {

// w -= lr * g; with momentum, buf = momentum * buf + g and w -= lr * buf (PyTorch's SGD with
// dampening 0, applied to touched rows only).
template <class T>
struct SgdUpdate {
    T* weight;
    T* momentum_buffer;  // null when momentum == 0
    std::size_t dim;
    T lr;
    T momentum;

    void operator()(std::uint64_t id, const T* __restrict g) const {
        T* __restrict w = weight + id * dim;
        if (momentum_buffer == nullptr) {
            for (std::size_t d = 0; d < dim; ++d) w[d] -= lr * g[d];
            return;
        }
        T* __restrict buf = momentum_buffer + id * dim;
        for (std::size_t d = 0; d < dim; ++d) {
            buf[d] = momentum * buf[d] + g[d];
            w[d] -= lr * buf[d];
        }
    }
};

// Adagrad as PyTorch applies it to sparse gradients: state += g^2; w -= lr * g / (sqrt(state) + eps).
// Row-wise (FBGEMM, TorchRec): one accumulator per row, state[id] += mean(g^2).
template <class T>
struct AdagradUpdate {
    T* weight;
    T* state_sum;  // (V, dim), or (V,) when row-wise
    std::size_t dim;
    T lr;
    T eps;
    bool rowwise;

    void operator()(std::uint64_t id, const T* __restrict g) const {
        T* __restrict w = weight + id * dim;
        if (rowwise) {
            T squares = 0;
            for (std::size_t d = 0; d < dim; ++d) squares += g[d] * g[d];
            T& acc = state_sum[id];
            acc += dim == 0 ? T(0) : squares / static_cast<T>(dim);
            const T denom = std::sqrt(acc) + eps;
            for (std::size_t d = 0; d < dim; ++d) w[d] -= lr * (g[d] / denom);
            return;
        }
        T* __restrict s = state_sum + id * dim;
        for (std::size_t d = 0; d < dim; ++d) {
            s[d] += g[d] * g[d];
            w[d] -= lr * (g[d] / (std::sqrt(s[d]) + eps));
        }
    }
};

// PyTorch's SparseAdam: the moments of touched rows move toward g and g^2; the bias correction
// uses the optimizer's global step, folded into step_size = lr * sqrt(1 - b2^t) / (1 - b1^t).
template <class T>
struct AdamUpdate {
    T* weight;
    T* exp_avg;
    T* exp_avg_sq;
    std::size_t dim;
    T beta1;
    T beta2;
    T eps;
    T step_size;

    void operator()(std::uint64_t id, const T* __restrict g) const {
        T* __restrict w = weight + id * dim;
        T* __restrict m = exp_avg + id * dim;
        T* __restrict v = exp_avg_sq + id * dim;
        for (std::size_t d = 0; d < dim; ++d) {
            m[d] += (g[d] - m[d]) * (T(1) - beta1);
            v[d] += (g[d] * g[d] - v[d]) * (T(1) - beta2);
            w[d] -= step_size * (m[d] / (std::sqrt(v[d]) + eps));
        }
    }
};

// Row sink that applies an update to every occurring id except the padding row, with the
// gradient divided by the id's count when options.scale_grad_by_freq.
template <class T, class Update>
class UpdateSink {
  public:
    UpdateSink(const Update& update, std::size_t dim, const GradOptions& options)
        : update_(update), dim_(dim), options_(options) {}

    void row(std::size_t, std::uint64_t id, const T* sum, std::size_t count) const {
        if (count == 0 || options_.is_padding(id)) return;
        if (!options_.scale_grad_by_freq || count == 1) {
            update_(id, sum);
            return;
        }
        std::vector<T> scaled(sum, sum + dim_);
        for (T& value : scaled) value /= static_cast<T>(count);
        update_(id, scaled.data());
    }
    void finish_part(std::size_t) const {}

  private:
    Update update_;
    std::size_t dim_;
    GradOptions options_;
};

}  // namespace fastembed
