// Backward of the embedding layer as a row-sparse gradient: the sorted distinct ids that occur
// and, for each, the sum of its gradient rows (shaped by GradOptions). It is written straight
// from the runs the reduction visits, so it costs O(N * D) whatever num_embeddings is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/half.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

// Writes each occurring id and its (scaled) sum into consecutive slots, in id order. The
// reduction tells start() how many distinct ids each part will see, so each part knows its
// first slot and parts write without coordinating. The padding id gets no slot: it is the
// sink's uncounted_id() (PyTorch drops it too, so that a sparse optimizer never touches the
// padding row). `accumulate` does not apply: merging is the caller's job.
//
// The result's memory comes from `output`, which owns it (the binding hands out NumPy arrays):
//   std::int64_t* output.indices(rows);   Out* output.values(rows, dim);
// both called once, from start(), on the thread that called reduce_by_id. Sums arrive in Out's
// arithmetic type and are rounded once, as they are written.
template <class Out, class Output>
class SparseRowSink {
  public:
    using T = accumulator_t<Out>;
    static constexpr bool counts_distinct_ids = true;

    SparseRowSink(std::size_t dim, const GradOptions& options, Output& output)
        : dim_(dim), options_(options), output_(output), writer_(0, 0) {}

    std::uint64_t uncounted_id() const { return options_.padding_idx; }

    void start(const std::vector<std::size_t>& distinct_in_part) {
        next_slot_.resize(distinct_in_part.size());
        std::size_t total = 0;
        for (std::size_t part = 0; part < distinct_in_part.size(); ++part) {
            next_slot_[part].value = total;
            total += distinct_in_part[part];
        }
        rows_ = total;
        indices_ = output_.indices(rows_);
        values_ = output_.values(rows_, dim_);
        writer_ = RowWriter(rows_ * dim_ * sizeof(Out), dim_ * sizeof(Out));
    }

    // Called for occurring ids only (count > 0); `sum` may be null when dim is 0.
    void row(std::size_t part, std::uint64_t id, const T* sum, std::size_t count) {
        if (count == 0 || options_.is_padding(id)) return;
        const std::size_t slot = next_slot_[part].value++;
        indices_[slot] = static_cast<std::int64_t>(id);
        if (dim_ == 0) return;
        Out* dst = values_ + slot * dim_;
        emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                        [this, dst](std::size_t offset, const T* values, std::size_t n) {
                            write_row(writer_, dst + offset, values, n);
                        });
    }

    void finish_part(std::size_t) const { writer_.finish(); }

    // Number of rows written (valid once the reduction has run).
    std::size_t rows() const { return rows_; }

  private:
    struct alignas(64) PaddedCount {  // one cache line per part: no false sharing
        std::size_t value = 0;
    };

    std::size_t dim_;
    GradOptions options_;
    Output& output_;
    RowWriter writer_;
    std::vector<PaddedCount> next_slot_;
    std::size_t rows_ = 0;
    std::int64_t* indices_ = nullptr;
    Out* values_ = nullptr;
};

// Writes the row-sparse gradient of a grad_output of storage S into memory from `output` (see
// SparseRowSink), in the same storage; returns its number of rows.
template <class S, class I, class Output>
std::size_t sparse_grad(const S* grad_output, const I* ids, std::size_t n, std::size_t dim,
                        std::size_t num_embeddings, const GradOptions& options, Output& output) {
    check_ids(ids, n, num_embeddings);
    SparseRowSink<S, Output> sink(dim, options, output);
    if (n == 0) {
        sink.start({});
        return 0;
    }
    reduce_by_id(ids, n, num_embeddings, grad_output, dim, false, sink);
    return sink.rows();
}

}  // namespace fastembed
