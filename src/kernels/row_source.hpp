// Row sources: where the backward reads the gradient row of each position of the ids.
//
// The reductions (runs.hpp, blocked_reduce.hpp) never index the gradient themselves; they ask a
// source, so a pooled lookup (EmbeddingBag) can feed them scaled rows of its per-bag gradient
// without materialising one row per id. A source provides:
//   using value_type = T;  std::size_t dim() const;
//   const void* address(std::size_t position) const;  // memory to prefetch for this position
//   const T* direct(std::size_t position) const;       // the row if used as it is, else nullptr
//   void load(T* acc, std::size_t position) const;     // acc = row
//   void accumulate(T* acc, std::size_t position) const;  // acc += row
#pragma once

#include <algorithm>
#include <cstddef>

#include "kernels/half.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// The gradient of a plain lookup: row i of a C-contiguous (n, dim) array of storage S, read
// in S's arithmetic type (float16 and bfloat16 rows are widened to float32 as they are added).
template <class S>
class GradRows {
  public:
    using value_type = accumulator_t<S>;

    GradRows(const S* grad, std::size_t dim) : grad_(grad), dim_(dim) {}

    std::size_t dim() const { return dim_; }
    const void* address(std::size_t position) const { return row(position); }
    const value_type* direct(std::size_t position) const {
        if constexpr (is_reduced_precision<S>) {
            (void)position;
            return nullptr;
        } else {
            return row(position);
        }
    }
    void load(value_type* acc, std::size_t position) const { widen_row(acc, row(position), dim_); }
    void accumulate(value_type* __restrict acc, std::size_t position) const {
        const S* __restrict source = row(position);
        for (std::size_t d = 0; d < dim_; ++d) acc[d] += Element<S>::widen(source[d]);
    }

  private:
    const S* row(std::size_t position) const { return grad_ + position * dim_; }

    const S* grad_;
    std::size_t dim_;
};

}  // namespace fastembed
