// Backward of the embedding layer as a dense gradient, without atomics, locks or per-thread
// copies of the table: grad_weight[v, :] = sum of grad_output[i, :] over i with ids[i] == v,
// shaped by GradOptions (padding row, frequency scaling, accumulation into `out`).
#pragma once

#include <cstddef>

#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// Overwriting: writes every row of the gradient exactly once (the run's sum, or zeros for an
// absent id or the padding row). Accumulating: adds each occurring id's sum into its row and
// leaves every other row as it was.
template <class T>
class DenseRowSink {
  public:
    // Accumulating reads every row it writes: streaming around the cache would not pay.
    DenseRowSink(T* out, std::size_t num_embeddings, std::size_t dim, const GradOptions& options)
        : out_(out),
          dim_(dim),
          writer_(options.accumulate ? 0 : num_embeddings * dim * sizeof(T), dim * sizeof(T)),
          options_(options) {}

    void row(std::size_t, std::uint64_t id, const T* sum, std::size_t count) const {
        T* dst = out_ + id * dim_;
        const bool skip = sum == nullptr || options_.is_padding(id);
        if (options_.accumulate) {
            if (skip) return;
            emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                            [dst](std::size_t offset, const T* values, std::size_t n) {
                                add_row(dst + offset, values, n);
                            });
        } else if (skip) {
            writer_.zero(dst, dim_ * sizeof(T));
        } else {
            emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                            [this, dst](std::size_t offset, const T* values, std::size_t n) {
                                writer_.copy(dst + offset, values, n * sizeof(T));
                            });
        }
    }
    void finish_part(std::size_t) const { writer_.finish(); }

  private:
    T* out_;
    std::size_t dim_;
    RowWriter writer_;
    GradOptions options_;
};

template <class T, class I>
void sorted_scatter_add(const T* grad_output, const I* ids, std::size_t n, std::size_t dim,
                        std::size_t num_embeddings, T* out, const GradOptions& options = {}) {
    check_ids(ids, n, num_embeddings);
    if (dim == 0 || num_embeddings == 0) return;
    DenseRowSink<T> sink(out, num_embeddings, dim, options);
    // Accumulating touches occurring ids only; overwriting must also zero the absent ones.
    reduce_by_id(ids, n, num_embeddings, grad_output, dim, !options.accumulate, sink);
}

}  // namespace fastembed
