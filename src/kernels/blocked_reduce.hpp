// The reduction for gradients small enough to stay in the cache: stream the gradient rows in
// position order into per-block sums, instead of visiting them in sorted (id) order.
//
// reduce_runs reads the gradient rows in (id, position) order: a random access per row, bound by
// memory latency. When all V * D sums fit in the cache it is faster to stream the rows in
// position order and add each into its id's accumulator. To use several threads, the positions
// are cut into K contiguous blocks, each summed into its own accumulators by one thread; each
// id's sum is then its block sums added in block order. Splitting by id range instead would make
// every thread stream the whole gradient (its rows are interleaved with the other threads' rows
// and the hardware prefetcher fetches them all): two threads were slower than one.
//
// Determinism: K depends on the data alone (V, D, N), never on the thread count, and every sum
// has a fixed order (rows in position order within a block, blocks in order), so results are
// bitwise identical for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/buffer.hpp"
#include "kernels/lanes.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/runs.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// Budgets of the choice, constants (never the host's cache or the thread count): the block count
// fixes the summation order, which must be the same on every host. They hold on a small cache:
// one block's sums at most 4 MiB, all blocks' sums at most 8 MiB, so two threads' live sums fit
// an 8 MiB L3 (one 2-core EPYC VM's). Not a private L2: a block's sums are a whole table's
// rows, and measured (2 threads, 1M uniform ids; shared 2-core VM, also with a neighbour
// process streaming a 256 MiB copy) the blocked path beat sorted runs 2.5-4x at V=10k D=64 and
// V=50k D=16 (2.6 and 3.2 MB of sums) even with one block; 2 blocks were as fast as 4 and
// faster than 8 or 16, whose extra sums only add to the final pass.
// One block's sums must fit in the cache beside the streams passing through...
inline constexpr std::size_t kCacheResidentBytes = std::size_t{4} << 20;
// ...and all blocks' sums together stay a bounded, cache-sized scratch (O(1), never O(N * D)).
inline constexpr std::size_t kBlockSumsBudgetBytes = std::size_t{8} << 20;
// Enough blocks to keep 16 cores busy.
inline constexpr std::size_t kMaxBlocks = 16;

// Number of position blocks for this shape, or 0 when this path does not pay: sums too large
// for the cache, or too few rows per id for streaming to beat the sorted path (the final pass
// reads K * V rows of block sums, which should stay at most a quarter of the N gradient rows).
inline std::size_t position_blocks(std::size_t n, std::size_t num_embeddings, std::size_t row_bytes) {
    const std::size_t sums_bytes = num_embeddings * row_bytes;
    if (sums_bytes == 0 || sums_bytes > kCacheResidentBytes) return 0;
    std::size_t blocks =
        std::min({kMaxBlocks, n / (4 * num_embeddings), kBlockSumsBudgetBytes / sums_bytes});
    if (blocks < 2) return 0;
    while (blocks & (blocks - 1)) blocks &= blocks - 1;  // a power of two: even split over 2^k threads
    if (n / blocks >= std::numeric_limits<std::uint32_t>::max()) return 0;
    return blocks;
}

// The blocked reduction with `blocks` position blocks (>= 1, n / blocks < 2^32).
template <class I, class Source, class Sink>
void blocked_reduce_in(std::size_t blocks, const I* ids, std::size_t n, std::uint64_t num_embeddings,
                       const Source& source, bool visit_absent_ids, Sink& sink) {
    using T = typename Source::value_type;
    const std::size_t dim = source.dim();
    const std::size_t row_bytes = dim * sizeof(T);
    const auto V = static_cast<std::size_t>(num_embeddings);

    // count[b * V + v]: occurrences of v in block b; sums[(b * V + v) * dim]: their rows' sum,
    // valid where the count is not zero (the first row is copied, so nothing is zeroed first).
    std::vector<std::uint32_t> count(blocks * V, 0);
    ScratchArray<T> sums(blocks * V * dim);
    const std::size_t ahead = prefetch_distance(row_bytes, n * row_bytes);
    auto sum_block = [&](std::size_t b) FASTEMBED_INLINE_LAMBDA {
        std::uint32_t* block_count = count.data() + b * V;
        T* block_sums = sums.get() + b * V * dim;
        const std::size_t end = n * (b + 1) / blocks;
        for (std::size_t i = n * b / blocks; i < end; ++i) {
            // The gradient rows stream (the hardware prefetcher follows them); the sums they add
            // into are the scattered accesses, out of the L2 for most shapes on this path.
            if (i + ahead < end) {
                prefetch_row(block_sums + static_cast<std::size_t>(ids[i + ahead]) * dim, row_bytes);
            }
            const auto id = static_cast<std::size_t>(ids[i]);
            T* sum = block_sums + id * dim;
            if (block_count[id]++ == 0) {
                source.load(sum, i);
            } else {
                source.accumulate(sum, i);
            }
        }
    };
    run_tasks(blocks, [&](std::size_t b) {
        on_this_cpu([&](auto) FASTEMBED_INLINE_LAMBDA { sum_block(b); });
    });

    // Parts: equal id ranges (every id costs about the same: K counts, at most K rows, one write).
    const std::size_t threads = threads_for_bytes(V * row_bytes * (blocks + 1));
    const std::size_t parts = std::min(V, parts_for(threads));
    auto part_begin = [&](std::size_t p) { return V * p / parts; };
    auto occurrences = [&](std::size_t v) {
        std::size_t total = 0;
        for (std::size_t b = 0; b < blocks; ++b) total += count[b * V + v];
        return total;
    };
    if constexpr (counts_distinct_ids<Sink>::value) {
        const std::uint64_t uncounted = sink.uncounted_id();
        std::vector<std::size_t> distinct_in_part(parts, 0);
        for (std::size_t p = 0; p < parts; ++p) {
            for (std::size_t v = part_begin(p); v < part_begin(p + 1); ++v) {
                distinct_in_part[p] += occurrences(v) != 0 && v != uncounted;
            }
        }
        sink.start(distinct_in_part);
    }
    auto add_blocks = [&](std::size_t p) FASTEMBED_INLINE_LAMBDA {
        std::vector<T> acc(dim);
        for (std::size_t v = part_begin(p); v < part_begin(p + 1); ++v) {
            const T* sum = nullptr;
            std::size_t total = 0;
            for (std::size_t b = 0; b < blocks; ++b) {
                const std::uint32_t c = count[b * V + v];
                if (c == 0) continue;
                const T* block_sum = sums.get() + (b * V + v) * dim;
                if (total == 0) {
                    sum = block_sum;
                } else {
                    if (sum != acc.data()) std::copy(sum, sum + dim, acc.data());
                    add_row(acc.data(), block_sum, dim);
                    sum = acc.data();
                }
                total += c;
            }
            if (total != 0 || visit_absent_ids) sink.row(p, v, sum, total);
        }
        sink.finish_part(p);
    };
    run_tasks(parts, [&](std::size_t p) {
        on_this_cpu([&](auto) FASTEMBED_INLINE_LAMBDA { add_blocks(p); });
    }, threads);
}

// Reduces like reduce_runs (same sink calls, sums in another fixed order) and returns true, or
// returns false without touching anything when position_blocks() declines the shape.
template <class I, class Source, class Sink>
bool blocked_reduce(const I* ids, std::size_t n, std::uint64_t num_embeddings,
                    const Source& source, bool visit_absent_ids, Sink& sink) {
    const std::size_t blocks = position_blocks(
        n, static_cast<std::size_t>(num_embeddings), source.dim() * sizeof(typename Source::value_type));
    if (blocks == 0) return false;
    blocked_reduce_in(blocks, ids, n, num_embeddings, source, visit_absent_ids, sink);
    return true;
}

}  // namespace fastembed
