// Backward of the embedding layer as a dense gradient, without atomics, locks or per-thread
// copies of the table: grad_weight[v, :] = sum of grad_output[i, :] over i with ids[i] == v.
#pragma once

#include <cstddef>

#include "kernels/check_ids.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// Writes every row of the gradient exactly once: the run's sum, or zeros for an absent id.
template <class T>
class DenseRowSink {
  public:
    DenseRowSink(T* out, std::size_t num_embeddings, std::size_t dim)
        : out_(out), dim_(dim), writer_(num_embeddings * dim * sizeof(T), dim * sizeof(T)) {}

    void row(std::size_t, std::uint64_t id, const T* sum, std::size_t) const {
        T* dst = out_ + id * dim_;
        if (sum != nullptr) {
            writer_.copy(dst, sum, dim_ * sizeof(T));
        } else {
            writer_.zero(dst, dim_ * sizeof(T));
        }
    }
    void finish_part(std::size_t) const { writer_.finish(); }

  private:
    T* out_;
    std::size_t dim_;
    RowWriter writer_;
};

template <class T, class I>
void sorted_scatter_add(const T* grad_output, const I* ids, std::size_t n, std::size_t dim,
                        std::size_t num_embeddings, T* out) {
    check_ids(ids, n, num_embeddings);
    if (dim == 0 || num_embeddings == 0) return;
    DenseRowSink<T> sink(out, num_embeddings, dim);
    reduce_by_id(ids, n, num_embeddings, grad_output, dim, true, sink);
}

}  // namespace fastembed
