// Routing for a row-sharded table: ids to per-shard buckets of local rows, and the shards' rows
// back to the caller's positions.
//
// The buckets come from the radix sort's stable pass (radix_sort.hpp) over each id's shard
// number: within a shard the ids keep their position order, so the sorted distinct ids of a
// gradient stay sorted in every shard, and a shard's local rows of ids that arrive sorted need
// no pass at all.
#pragma once

#include <cstddef>
#include <cstdint>

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

// Buckets ids[0..n) (already checked against the table) by shard: for k in
// [offsets[s], offsets[s + 1]), local[k] is the row within shard s of the id at ids[positions[k]],
// and positions increase within a bucket. offsets has num_shards + 1 entries.
template <class I, class Placement>
void route_ids(const I* ids, std::size_t n, std::size_t num_shards, const Placement& placement,
               I* local, std::int64_t* positions, std::int64_t* offsets) {
    ScratchArray<std::uint32_t> shards(n);
    std::uint32_t* shard_of = shards.get();
    parallel_ranges(n, threads_for_bytes(n * (sizeof(I) + sizeof(std::uint32_t))),
                    [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            shard_of[i] = static_cast<std::uint32_t>(placement.shard(static_cast<std::uint64_t>(ids[i])));
        }
    });
    with_sorted_ids(shard_of, n, num_shards, [&](const auto& sorted) {
        const std::size_t bytes = n * (2 * sizeof(std::int64_t) + 2 * sizeof(I));
        parallel_ranges(n, threads_for_bytes(bytes), [&](std::size_t, std::size_t begin, std::size_t end) {
            for (std::size_t k = begin; k < end; ++k) {
                const std::uint64_t position = sorted.position(k);
                positions[k] = static_cast<std::int64_t>(position);
                local[k] = static_cast<I>(placement.local(static_cast<std::uint64_t>(ids[position])));
            }
        });
        for (std::size_t s = 0; s < num_shards; ++s) {
            offsets[s] = static_cast<std::int64_t>(sorted.lower_bound(s));
        }
        offsets[num_shards] = static_cast<std::int64_t>(n);
    });
}

// out[positions[j]] = source[row_of(j)] for j in [0, n), rows of `dim` elements: a shard's rows
// put back where the caller's ids were (row_of(j) = rows[j] to look them up in the shard's
// table, or j for rows the shard already looked up). Positions are distinct and checked.
template <class T, class RowOf>
void place_rows(const T* source, std::size_t dim, RowOf row_of, const std::int64_t* positions,
                std::size_t n, T* out) {
    if (n == 0 || dim == 0) return;
    const std::size_t row_bytes = dim * sizeof(T);
    const RowWriter writer(n * row_bytes, row_bytes);
    const std::size_t ahead = prefetch_distance(row_bytes);
    parallel_ranges(n, threads_for_bytes(2 * n * row_bytes), [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t j = begin; j < end; ++j) {
            if (j + ahead < end) prefetch_row(source + row_of(j + ahead) * dim, row_bytes);
            writer.copy(out + static_cast<std::size_t>(positions[j]) * dim, source + row_of(j) * dim,
                        row_bytes);
        }
        writer.finish();
    });
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
