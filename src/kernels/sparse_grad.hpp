// Backward of the embedding layer as a row-sparse gradient: the sorted distinct ids that occur
// and, for each, the sum of its gradient rows (shaped by GradOptions). It is written straight
// from the runs the reduction visits, so it costs O(N * D) whatever num_embeddings is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/check_ids.hpp"
#include "kernels/grad_options.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// Writes each occurring id and its (scaled) sum into consecutive slots, in id order. The
// reduction tells start() how many distinct ids each part will see, so each part knows its
// first slot and parts write without coordinating. The padding id, when it occurs, gets no
// slot: every id above it moves down by one (PyTorch drops it too, so that a sparse optimizer
// never touches the padding row). `accumulate` does not apply: merging is the caller's job.
//
// The result's memory comes from `output`, which owns it (the binding hands out NumPy arrays):
//   std::int64_t* output.indices(rows);   T* output.values(rows, dim);
// both called once, from start(), on the thread that called reduce_by_id.
template <class T, class Output>
class SparseRowSink {
  public:
    static constexpr bool counts_distinct_ids = true;

    // `padding_occurs`: whether options.padding_idx is among the ids (see contains_id).
    SparseRowSink(std::size_t dim, const GradOptions& options, bool padding_occurs, Output& output)
        : dim_(dim),
          options_(options),
          padding_occurs_(padding_occurs),
          output_(output),
          writer_(0, 0) {}

    void start(const std::vector<std::size_t>& distinct_in_part) {
        next_slot_.resize(distinct_in_part.size());
        std::size_t total = 0;
        for (std::size_t part = 0; part < distinct_in_part.size(); ++part) {
            next_slot_[part].value = total;
            total += distinct_in_part[part];
        }
        rows_ = total - (padding_occurs_ ? 1 : 0);
        indices_ = output_.indices(rows_);
        values_ = output_.values(rows_, dim_);
        writer_ = RowWriter(rows_ * dim_ * sizeof(T), dim_ * sizeof(T));
    }

    // Called for occurring ids only (count > 0); `sum` may be null when dim is 0.
    void row(std::size_t part, std::uint64_t id, const T* sum, std::size_t count) {
        if (count == 0) return;
        const std::size_t raw_slot = next_slot_[part].value++;
        if (options_.is_padding(id)) return;
        const std::size_t slot = raw_slot - (padding_occurs_ && id > options_.padding_idx ? 1 : 0);
        indices_[slot] = static_cast<std::int64_t>(id);
        if (dim_ == 0) return;
        T* dst = values_ + slot * dim_;
        emit_scaled_row(sum, count, dim_, options_.scale_grad_by_freq,
                        [this, dst](std::size_t offset, const T* values, std::size_t n) {
                            writer_.copy(dst + offset, values, n * sizeof(T));
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
    bool padding_occurs_;
    Output& output_;
    RowWriter writer_;
    std::vector<PaddedCount> next_slot_;
    std::size_t rows_ = 0;
    std::int64_t* indices_ = nullptr;
    T* values_ = nullptr;
};

// Whether `id` occurs among ids[0..n).
template <class I>
bool contains_id(const I* ids, std::size_t n, std::uint64_t id) {
    const std::size_t parts = threads_for_bytes(n * sizeof(I));
    std::vector<char> found(parts, 0);
    parallel_ranges(n, parts, [&](std::size_t part, std::size_t begin, std::size_t end) {
        bool any = false;
        for (std::size_t i = begin; i < end; ++i) any |= static_cast<std::uint64_t>(ids[i]) == id;
        found[part] = any;
    });
    for (char f : found) {
        if (f) return true;
    }
    return false;
}

// Writes the row-sparse gradient into memory from `output` (see SparseRowSink); returns its
// number of rows.
template <class T, class I, class Output>
std::size_t sparse_grad(const T* grad_output, const I* ids, std::size_t n, std::size_t dim,
                        std::size_t num_embeddings, const GradOptions& options, Output& output) {
    check_ids(ids, n, num_embeddings);
    const bool padding_occurs =
        options.padding_idx != GradOptions::kNoPadding && contains_id(ids, n, options.padding_idx);
    SparseRowSink<T, Output> sink(dim, options, padding_occurs, output);
    if (n == 0) {
        sink.start({});
        return 0;
    }
    reduce_by_id(ids, n, num_embeddings, grad_output, dim, false, sink);
    return sink.rows();
}

}  // namespace fastembed
