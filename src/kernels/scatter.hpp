// Backward of the embedding layer as a dense gradient, without atomics, locks or per-thread
// copies of the table: grad_weight[v, :] = sum of grad_output[i, :] over i with ids[i] == v,
// shaped by GradOptions (padding row, frequency scaling, accumulation into `out`).
#pragma once

#include <cstddef>
#include <type_traits>

#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/half.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// Overwriting: writes every row of the gradient exactly once (the run's sum, or zeros for an
// absent id or the padding row). Accumulating: adds each occurring id's sum into its row and
// leaves every other row as it was. Sums arrive in the arithmetic type of Out (float32 for
// float16 and bfloat16) and are rounded once, as they are written.
template <class Out>
class DenseRowSink {
  public:
    using T = accumulator_t<Out>;

    // Accumulating reads every row it writes: streaming around the cache would not pay.
    DenseRowSink(Out* out, std::size_t num_embeddings, std::size_t dim, const GradOptions& options)
        : out_(out),
          dim_(dim),
          writer_(options.accumulate ? 0 : num_embeddings * dim * sizeof(Out), dim * sizeof(Out)),
          options_(options) {}

    void row(std::size_t, std::uint64_t id, const T* sum, std::size_t count) const {
        Out* dst = out_ + id * dim_;
        const bool skip = sum == nullptr || options_.is_padding(id);
        if (options_.accumulate) {
            if (skip) return;
            emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                            [dst](std::size_t offset, const T* values, std::size_t n) {
                                add_into_row(dst + offset, values, n);
                            });
        } else if (skip) {
            writer_.zero(dst, dim_ * sizeof(Out));
        } else {
            emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                            [this, dst](std::size_t offset, const T* values, std::size_t n) {
                                write_row(writer_, dst + offset, values, n);
                            });
        }
    }
    void finish_part(std::size_t) const { writer_.finish(); }

  private:
    Out* out_;
    std::size_t dim_;
    RowWriter writer_;
    GradOptions options_;
};

// grad_output of storage S, out of storage Out computed in the same arithmetic (float32 for
// float32, float16 and bfloat16).
template <class S, class Out, class I>
void sorted_scatter_add(const S* grad_output, const I* ids, std::size_t n, std::size_t dim,
                        std::size_t num_embeddings, Out* out, const GradOptions& options = {}) {
    static_assert(std::is_same_v<accumulator_t<S>, accumulator_t<Out>>);
    check_ids(ids, n, num_embeddings);
    if (dim == 0 || num_embeddings == 0) return;
    DenseRowSink<Out> sink(out, num_embeddings, dim, options);
    // Accumulating touches occurring ids only; overwriting must also zero the absent ones.
    reduce_by_id(ids, n, num_embeddings, grad_output, dim, !options.accumulate, sink);
}

}  // namespace fastembed
