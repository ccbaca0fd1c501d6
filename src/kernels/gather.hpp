// Forward of the embedding layer: out[i, :] = weight[ids[i], :].
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "kernels/check_ids.hpp"
#include "kernels/half.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// Tables from this size on may be read in id order (see reads_in_id_order): twice the L3 (64 MiB
// on the 32 MiB L3 it was measured with), where nearly every read misses the cache. Speed only.
inline std::size_t in_order_table_bytes() { return 2 * host_caches().used.l3; }

// Top id bits the in-order gather buckets by: each of the 1024 buckets spans 1/1024 of the
// table, and the pass's 1024 write streams stay in the cache (2048 made the pass twice as slow:
// 3.5 vs 1.5 ms for 1M ids at one thread).
inline constexpr unsigned kInOrderBucketBits = 10;

// Whether evenly spaced ids are nearly all distinct (7 in 8 or more of up to 1024, a sample
// small enough against the table that uniform ids give ~97% or more). Skewed ids, frequent
// words say, are mostly cache hits in any order: Zipf(1.1) ids give 64% here.
template <class I>
bool sample_is_spread(const I* ids, std::size_t n, std::size_t num_embeddings) {
    constexpr std::size_t kMaxSample = 1024;
    const std::size_t size = std::min({n, kMaxSample, num_embeddings / 16});
    if (size == 0) return false;
    std::array<std::uint64_t, kMaxSample> sample;
    for (std::size_t s = 0; s < size; ++s) sample[s] = static_cast<std::uint64_t>(ids[s * (n / size)]);
    std::sort(sample.begin(), sample.begin() + size);
    const auto distinct =
        static_cast<std::size_t>(std::unique(sample.begin(), sample.begin() + size) - sample.begin());
    return 8 * distinct >= 7 * size;
}

// Whether a gather reads the table in id order, writing each row to its scattered place in
// `out`, rather than in position order. On a table far larger than the cache nearly every read
// misses, and random reads use DRAM poorly once two threads compete for it: one stable pass
// over the ids' top bits lets the threads sweep the table from start to end, and the scattered
// stores do not wait the way loads do. Measured (2 threads; the pass over 1M shuffled ids
// costs ~1.5 ms at one thread, ~1 ms at two):
//   1M uniform ids, 1M x 64 float32 table (256 MB): 14.7 -> 12.0 ms; 4M ids: 56.7 -> 39.8
//   200k uniform ids, 100k x 256 float32: 8.9 -> 7.0 ms; 1M x 128, 1M ids: 27.5 -> 22.9
// and where it does not pay, each condition below:
//   one thread: 1M ids, 1M x 64: 14.9 -> 16.4 ms (one core is bound by its misses' latency)
//   rows under 256 bytes: 1M ids, 4M x 32: 7.3 -> 8.2 ms (the pass costs too much per byte)
//   a batch touching little of the table: 300k ids, 1M x 64: 3.6 -> 4.4 ms
//   skewed ids, Zipf(1.1), 1M x 64: 9.7 -> 11.0 ms (hot rows already hit the cache)
//   output rows off the cache lines (NumPy's own arrays start 16 bytes past one) of under 1 KiB:
//   each scattered row ends in two partial lines, which the streaming stores (RowWriter) cannot
//   merge with the neighbouring rows' as a sequential write does. 1M uniform ids, position
//   order -> id order, aligned / 16 bytes off: 1M x 64 17.7 -> 17.4 / 18.5 -> 29.1 ms;
//   1M x 128 39.0 -> 30.6 / 39.4 -> 37.9; 200k x 256 68.4 -> 39.7 / 69.5 -> 45.5. (Plain
//   stores for the partial lines were slower still: 40 ms for 1M x 64.) With whole lines
//   stored in one instruction (RowWriter), 1M x 64 on Zen 4 in one process: 22.7 -> 18.8 /
//   19.0 -> 23.5 ms.
template <class I>
bool reads_in_id_order(const I* ids, std::size_t n, std::size_t num_embeddings,
                       std::size_t row_bytes, const void* out, std::size_t out_row_bytes) {
    const bool whole_lines = ((reinterpret_cast<std::uintptr_t>(out) | out_row_bytes) & 63) == 0;
    return get_num_threads() >= 2 && row_bytes >= 256 && (whole_lines || out_row_bytes >= 1024) &&
           num_embeddings * row_bytes >= in_order_table_bytes() && n >= num_embeddings / 2 &&
           sample_is_spread(ids, n, num_embeddings);
}

// Where row `id` of a plain table starts. Copies take any such `row_at(id)`: a sharded table's
// rows live in several arrays (kernels/route.hpp).
template <class T>
struct TableRows {
    const T* weight;
    std::size_t dim;

    const T* operator()(std::uint64_t id) const { return weight + id * dim; }
};

// How a gather turns a table row into an output row: `Table` provides
//   using output_type;   const void* row_address(std::size_t id) const;
//   std::size_t row_bytes() const;   void copy(const RowWriter&, output_type* dst, id) const;
// (row_address and row_bytes as the pooled kernel's row readers, bag.hpp). Rows of the output's
// own dtype are copied as bytes from wherever row_at(id) says (RowCopy); reduced-precision rows
// are widened into a float32 output (RowWiden); quantize.hpp's reader dequantizes packed rows.
template <class T, class RowAt = TableRows<T>>
class RowCopy {
  public:
    using output_type = T;
    RowCopy(const RowAt& row_at, std::size_t dim) : row_at_(row_at), dim_(dim) {}
    const void* row_address(std::size_t id) const { return row_at_(id); }
    std::size_t row_bytes() const { return dim_ * sizeof(T); }
    void copy(const RowWriter& writer, T* dst, std::uint64_t id) const {
        writer.copy(dst, row_at_(id), row_bytes());
    }

  private:
    RowAt row_at_;
    std::size_t dim_;
};

template <class S>
class RowWiden {
  public:
    using output_type = accumulator_t<S>;
    RowWiden(const S* weight, std::size_t dim) : weight_(weight), dim_(dim) {}
    const void* row_address(std::size_t id) const { return weight_ + id * dim_; }
    std::size_t row_bytes() const { return dim_ * sizeof(S); }
    void copy(const RowWriter&, output_type* dst, std::uint64_t id) const {
        widen_row(dst, weight_ + id * dim_, dim_);
    }

  private:
    const S* weight_;
    std::size_t dim_;
};

// out[i] = table row ids[i] for i in [0, n), reading rows in position order.
template <class Table, class I>
void copy_rows_in_position_order(const Table& table, std::size_t num_embeddings, std::size_t dim,
                                 const I* ids, std::size_t n, typename Table::output_type* out) {
    const std::size_t row_bytes = table.row_bytes();
    const std::size_t out_row_bytes = dim * sizeof(*out);
    const RowWriter writer(n * out_row_bytes, out_row_bytes);
    const std::size_t ahead = prefetch_distance(row_bytes, n * row_bytes, num_embeddings * row_bytes);
    parallel_ranges(n, threads_for_bytes(n * (row_bytes + out_row_bytes) + n * sizeof(I)),
                    [&](std::size_t, std::size_t begin, std::size_t end) {
        // The positions up to prefetch_end prefetch the row `ahead` positions on; none if 0.
        const std::size_t prefetch_end = ahead != 0 && end - begin > ahead ? end - ahead : begin;
        std::size_t i = begin;
        for (; i < prefetch_end; ++i) {
            prefetch_row(table.row_address(static_cast<std::size_t>(ids[i + ahead])), row_bytes);
            table.copy(writer, out + i * dim, static_cast<std::uint64_t>(ids[i]));
        }
        for (; i < end; ++i) table.copy(writer, out + i * dim, static_cast<std::uint64_t>(ids[i]));
        writer.finish();
    });
}

// The same copy, reading rows in the order of the ids' top bits.
template <class Table, class I>
void copy_rows_in_id_order(const Table& table, std::size_t num_embeddings, std::size_t dim,
                           const I* ids, std::size_t n, typename Table::output_type* out) {
    const std::size_t row_bytes = table.row_bytes();
    const std::size_t out_row_bytes = dim * sizeof(*out);
    const RowWriter writer(n * out_row_bytes, out_row_bytes);
    const std::size_t ahead = prefetch_distance(row_bytes, n * row_bytes);
    with_id_keys(
        n, num_embeddings,
        [&](auto& keys) { keys.sort_by_top_bits(ids, num_embeddings, kInOrderBucketBits); },
        [&](const auto& keys) {
            parallel_ranges(n, threads_for_bytes(n * (row_bytes + out_row_bytes)),
                            [&](std::size_t, std::size_t begin, std::size_t end) {
                for (std::size_t k = begin; k < end; ++k) {
                    if (k + ahead < end) prefetch_row(table.row_address(keys.id(k + ahead)), row_bytes);
                    table.copy(writer, out + keys.position(k) * dim, keys.id(k));
                }
                writer.finish();
            });
        });
}

// The copy alone, for ids that have already passed check_ids.
template <class Table, class I>
void copy_table_rows(const Table& table, std::size_t num_embeddings, std::size_t dim, const I* ids,
                     std::size_t n, typename Table::output_type* out) {
    if (n == 0 || dim == 0) return;
    if (reads_in_id_order(ids, n, num_embeddings, table.row_bytes(), out, dim * sizeof(*out))) {
        copy_rows_in_id_order(table, num_embeddings, dim, ids, n, out);
    } else {
        copy_rows_in_position_order(table, num_embeddings, dim, ids, n, out);
    }
}

// The byte copy of rows row_at(id) of a table of num_embeddings rows of `dim` elements.
template <class T, class I, class RowAt>
void copy_rows_at(const RowAt& row_at, std::size_t num_embeddings, std::size_t dim, const I* ids,
                  std::size_t n, T* out) {
    copy_table_rows(RowCopy<T, RowAt>(row_at, dim), num_embeddings, dim, ids, n, out);
}

template <class T, class I>
void copy_rows(const T* weight, std::size_t num_embeddings, std::size_t dim, const I* ids,
               std::size_t n, T* out) {
    copy_rows_at(TableRows<T>{weight, dim}, num_embeddings, dim, ids, n, out);
}

template <class T, class I>
void gather_rows(const T* weight, std::size_t num_embeddings, std::size_t dim, const I* ids,
                 std::size_t n, T* out) {
    check_ids(ids, n, num_embeddings);
    copy_rows(weight, num_embeddings, dim, ids, n, out);
}

}  // namespace fastembed
