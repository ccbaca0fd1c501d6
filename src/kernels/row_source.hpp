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

#include "kernels/row_ops.hpp"

namespace fastembed {

// The gradient of a plain lookup: row i of a C-contiguous (n, dim) array.
template <class T>
class GradRows {
  public:
    using value_type = T;

    GradRows(const T* grad, std::size_t dim) : grad_(grad), dim_(dim) {}

    std::size_t dim() const { return dim_; }
    const void* address(std::size_t position) const { return direct(position); }
    const T* direct(std::size_t position) const { return grad_ + position * dim_; }
    void load(T* acc, std::size_t position) const {
        const T* row = direct(position);
        std::copy(row, row + dim_, acc);
    }
    void accumulate(T* acc, std::size_t position) const { add_row(acc, direct(position), dim_); }

  private:
    const T* grad_;
    std::size_t dim_;
};

}  // namespace fastembed
