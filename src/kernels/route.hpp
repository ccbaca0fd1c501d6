// Routing for a row-sharded table: ids to per-shard buckets of local rows, and the shards' rows
// back to the caller's positions.
//
// Ids are renamed so that each shard's rows follow the previous shard's (ConcatenatedRows):
// the distinct renamed ids in increasing order are then the buckets, and the sorted distinct ids
// of a gradient stay sorted in every shard.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/buffer.hpp"
#include "kernels/gather.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// Division by a fixed divisor (>= 1), the cost of every row address of a sharded table: a
// 64-bit div takes tens of cycles, as long as a lookup's row copy. A power of two is a shift
// and a mask; other divisors divide in 32 bits where the id fits (every table below 4G rows).
class Divisor {
  public:
    explicit Divisor(std::uint64_t divisor)
        : divisor_(divisor), power_of_two_((divisor & (divisor - 1)) == 0),
          shift_(bit_width(divisor) - 1) {}

    std::uint64_t quotient(std::uint64_t x) const {
        if (power_of_two_) return x >> shift_;
        if ((x >> 32) == 0 && (divisor_ >> 32) == 0) {
            return static_cast<std::uint32_t>(x) / static_cast<std::uint32_t>(divisor_);
        }
        return x / divisor_;
    }
    std::uint64_t remainder(std::uint64_t x) const { return x - quotient(x) * divisor_; }

  private:
    std::uint64_t divisor_;
    bool power_of_two_;
    unsigned shift_;
};

// Shard s holds the contiguous rows [s * rows_per_shard, (s + 1) * rows_per_shard).
struct RangePlacement {
    Divisor rows_per_shard;  // >= 1

    std::uint64_t shard(std::uint64_t id) const { return rows_per_shard.quotient(id); }
    std::uint64_t local(std::uint64_t id) const { return rows_per_shard.remainder(id); }
};

// Shard s holds the rows s, s + num_shards, s + 2 * num_shards, ...: frequent ids, which are
// usually the small ones, land on every shard.
struct ModuloPlacement {
    Divisor num_shards;  // >= 1

    std::uint64_t shard(std::uint64_t id) const { return num_shards.remainder(id); }
    std::uint64_t local(std::uint64_t id) const { return num_shards.quotient(id); }
};

// Rows that shard s of a (rows)-row table on `shards` shards holds (python/fastembed/distributed/
// layout.py says the same).
inline std::uint64_t rows_of_shard(std::uint64_t rows, std::uint64_t shards, std::uint64_t s, bool modulo) {
    if (modulo) return rows > s ? (rows - 1 - s) / shards + 1 : 0;
    const std::uint64_t per_shard = rows == 0 ? 1 : (rows + shards - 1) / shards;
    const std::uint64_t begin = std::min(rows, s * per_shard);
    return std::min(rows, begin + per_shard) - begin;
}

// Where each row sits when the shards' tables are laid end to end in shard order: local row r of
// shard s is row first_row[s] + r. A bijection of [0, num_embeddings) that keeps the order of
// ids within a shard (identity for a range placement), so ids renamed by it sort grouped by
// shard, and a gradient reduced over them has the same runs (the same positions, so the same
// sums, bit for bit) as over the global ids: no routing pass is needed after the reduction.
template <class Placement>
struct ConcatenatedRows {
    Placement placement;
    const std::uint64_t* first_row;  // num_shards + 1 entries, first_row[num_shards] = rows

    std::uint64_t operator()(std::uint64_t id) const {
        return first_row[placement.shard(id)] + placement.local(id);
    }
};

// out[i] = concatenated(ids[i]) for i in [0, n) (ids already checked against the table).
template <class I, class Placement>
void concatenate_rows(const I* ids, std::size_t n, const ConcatenatedRows<Placement>& concatenated,
                      I* out) {
    parallel_ranges(n, threads_for_bytes(2 * n * sizeof(I)), [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            out[i] = static_cast<I>(concatenated(static_cast<std::uint64_t>(ids[i])));
        }
    });
}

// Whether route_distinct finds the distinct rows by marking them in bitmaps of the whole table
// (distinct_by_marking) rather than by sorting the ids. Both give the same arrays; this is speed
// only, and the shape alone decides. The bitmaps cost passes over rows / 64 words per thread,
// the sort passes over the n ids. Measured, 2 threads, uniform ids, sort -> bitmaps: n = 1M
// over 100k rows 10.1 -> 3.1 ms, 1M rows 11.3 -> 3.5, 16M 15.5 -> 8.3, 64M 17.7 -> 15.6, 256M
// 18.5 -> 40.9; n = 100k over 10M rows 1.8 -> 1.5, 100M 2.3 -> 5.3; n = 10k over 1M rows
// 0.07 -> 0.13 ms. Slots are counted in 32 bits.
inline bool marks_distinct_rows(std::size_t n, std::uint64_t rows) {
    return rows <= 32 * static_cast<std::uint64_t>(n) && rows < (std::uint64_t{1} << 32);
}

// The distinct keys (rows in [0, rows)) in increasing order, written to local_of(distinct),
// and inverse[i] = the slot of keys[i] among them: by a stable radix sort of the keys.
template <class I, class LocalOf>
void distinct_by_sorting(const I* keys, std::size_t n, std::uint64_t rows, std::int64_t* inverse,
                         LocalOf&& local_of) {
    with_sorted_ids(keys, n, rows, [&](const auto& sorted) {
        // Run starts per part, then each part numbers its runs from the count before it: a part
        // that opens inside a run continues that run's slot.
        const std::size_t threads = threads_for_bytes(n * (sizeof(std::int64_t) + 2 * sizeof(I)));
        auto opens_run = [&](std::size_t k) { return k == 0 || sorted.id(k) != sorted.id(k - 1); };
        const std::vector<std::size_t> starts_before =
            counts_before_parts(n, threads, [&](std::size_t begin, std::size_t end) {
                std::size_t starts = 0;
                for (std::size_t k = begin; k < end; ++k) starts += opens_run(k);
                return starts;
            });
        I* local = local_of(starts_before.back());
        parallel_ranges(n, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
            std::size_t slot = starts_before[part] - 1;  // wraps for part 0, whose key 0 opens a run
            for (std::size_t k = begin; k < end; ++k) {
                if (opens_run(k)) local[++slot] = static_cast<I>(sorted.id(k));
                inverse[sorted.position(k)] = static_cast<std::int64_t>(slot);
            }
        });
    });
}

// The same arrays from bitmaps of the table's rows, with no sort and the inverse written in
// position order instead of scattered. Each thread marks the rows of its share of the keys in
// a bitmap of its own (rows / 8 bytes, which stays in the cache), so no two threads write one
// word; the bitmaps are merged word by word and each word's slot is the count of marked rows
// before it. A row's slot is then its word's slot plus the marked rows below it in the word.
template <class I, class LocalOf>
void distinct_by_marking(const I* keys, std::size_t n, std::uint64_t rows, std::int64_t* inverse,
                         LocalOf&& local_of) {
    const auto words = static_cast<std::size_t>((rows + 63) / 64);
    const std::size_t threads = threads_for_bytes(n * (sizeof(I) + sizeof(std::int64_t)));
    // Bitmaps of at most 16 bytes per key in all, the radix sort's scratch: a table of many
    // rows per key is marked by fewer threads.
    const std::size_t bitmap_count =
        std::max<std::size_t>(1, std::min<std::uint64_t>(threads, 128 * static_cast<std::uint64_t>(n) / (rows + 1)));
    ScratchArray<std::uint64_t> bitmaps(bitmap_count * words);  // bitmap 0 becomes the merged one
    ScratchArray<std::uint32_t> slot_before(words + 1);
    run_tasks(
        bitmap_count,
        [&](std::size_t part) {
            std::uint64_t* bits = bitmaps.get() + part * words;
            std::fill(bits, bits + words, std::uint64_t{0});
            for (std::size_t i = n * part / bitmap_count; i < n * (part + 1) / bitmap_count; ++i) {
                const auto row = static_cast<std::uint64_t>(keys[i]);
                bits[row / 64] |= std::uint64_t{1} << (row % 64);
            }
        },
        bitmap_count);
    std::uint64_t* merged = bitmaps.get();
    const std::vector<std::size_t> marked_before =
        counts_before_parts(words, threads, [&](std::size_t begin, std::size_t end) {
            std::size_t count = 0;
            for (std::size_t w = begin; w < end; ++w) {
                std::uint64_t word = merged[w];
                for (std::size_t other = 1; other < bitmap_count; ++other) word |= bitmaps[other * words + w];
                merged[w] = word;
                count += static_cast<std::size_t>(__builtin_popcountll(word));
            }
            return count;
        });
    I* local = local_of(marked_before.back());
    slot_before[words] = static_cast<std::uint32_t>(marked_before.back());
    parallel_ranges(words, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        std::size_t slot = marked_before[part];
        for (std::size_t w = begin; w < end; ++w) {
            slot_before[w] = static_cast<std::uint32_t>(slot);
            for (std::uint64_t word = merged[w]; word != 0; word &= word - 1) {
                local[slot++] = static_cast<I>(64 * w + static_cast<std::size_t>(__builtin_ctzll(word)));
            }
        }
    });
    parallel_ranges(n, threads, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            const auto row = static_cast<std::uint64_t>(keys[i]);
            const std::uint64_t below = merged[row / 64] & ((std::uint64_t{1} << (row % 64)) - 1);
            inverse[i] = static_cast<std::int64_t>(slot_before[row / 64]) + __builtin_popcountll(below);
        }
    });
}

// The distinct ids of a batch, bucketed by shard, and where each id's row is among them: what a
// lookup sends when every shard is asked once per distinct id. Ids are renamed to concatenated
// rows (ConcatenatedRows), whose distinct values in increasing order are the distinct ids in
// shard order, then row order. For k in [offsets[s], offsets[s + 1]), local[k] is a row of
// shard s (increasing within the shard), and the id at position i is the one at slot
// inverse[i]. local_of(u) returns the array for u distinct ids (the caller allocates it once u
// is known); offsets has num_shards + 1 entries.
template <class I, class Placement, class LocalOf>
void route_distinct(const I* ids, std::size_t n, std::uint64_t num_embeddings, std::size_t num_shards,
                    const ConcatenatedRows<Placement>& concatenated, bool identity,
                    std::int64_t* inverse, std::int64_t* offsets, LocalOf&& local_of) {
    ScratchArray<I> renamed(identity ? 0 : n);
    if (!identity) concatenate_rows(ids, n, concatenated, renamed.get());
    const I* keys = identity ? ids : renamed.get();
    I* local = nullptr;
    std::size_t distinct = 0;
    auto keep_local = [&](std::size_t count) {
        distinct = count;
        return local = local_of(count);
    };
    if (marks_distinct_rows(n, num_embeddings)) {
        distinct_by_marking(keys, n, num_embeddings, inverse, keep_local);
    } else {
        distinct_by_sorting(keys, n, num_embeddings, inverse, keep_local);
    }
    for (std::size_t s = 0; s <= num_shards; ++s) {
        offsets[s] = static_cast<std::int64_t>(
            std::lower_bound(local, local + distinct, concatenated.first_row[s],
                             [](I row, std::uint64_t bound) { return static_cast<std::uint64_t>(row) < bound; }) -
            local);
    }
    run_tasks(num_shards, [&](std::size_t s) {
        for (auto k = offsets[s]; k < offsets[s + 1]; ++k) {
            local[k] = static_cast<I>(static_cast<std::uint64_t>(local[k]) - concatenated.first_row[s]);
        }
    });
}

// out[i] = the row at slot inverse[i] of the shards' answers laid end to end (answers[s] holds
// the rows of slots [offsets[s], offsets[s + 1]), `dim` elements each): a lookup of distinct
// ids put back in the caller's order. Slots are checked by the caller.
template <class T, class I>
void expand_rows(const T* const* answers, const std::int64_t* offsets, std::size_t num_shards,
                 std::size_t dim, const I* inverse, std::size_t n, T* out) {
    const auto distinct = static_cast<std::size_t>(offsets[num_shards]);
    ScratchArray<const T*> slot_rows(distinct);
    const T** rows = slot_rows.get();
    run_tasks(num_shards, [&](std::size_t s) {
        for (auto k = offsets[s]; k < offsets[s + 1]; ++k) {
            rows[k] = answers[s] + static_cast<std::size_t>(k - offsets[s]) * dim;
        }
    });
    copy_rows_at([rows](std::uint64_t slot) { return rows[slot]; }, distinct, dim, inverse, n, out);
}

// Where row `id` of a sharded table starts: tables[s] holds shard s's rows.
template <class T, class Placement>
struct ShardedRows {
    const T* const* tables;
    Placement placement;
    std::size_t dim;

    const T* operator()(std::uint64_t id) const {
        return tables[placement.shard(id)] + placement.local(id) * dim;
    }
};

}  // namespace fastembed
