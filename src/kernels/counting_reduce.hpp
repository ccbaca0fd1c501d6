// The same reduction as reduce_runs, for gradients small enough to stay in the cache.
//
// reduce_runs reads the gradient rows in (id, position) order: a random access per row, bound
// by memory latency. When all V * D sums fit in the cache, it is faster to stream grad in
// position order and add each row into its id's accumulator: a counting sort by id gives each
// thread the positions of its id range in increasing order. Every id's sum is still its rows
// added one by one in position order, starting from a copy of the first, so the results are
// bitwise identical to reduce_runs (and so independent of the thread count). Heavy runs, which
// reduce_runs sums in blocks, are left to reduce_runs: this path declines such inputs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/buffer.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/runs.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// Gradients up to this size take the counting path: they fit the last-level cache of any
// server CPU with room to spare for the streams passing through.
inline constexpr std::size_t kCacheResidentBytes = std::size_t{8} << 20;

// Whether run [begin, end) of n sorted keys counts as heavy for reduce_runs (see plan_runs).
inline bool is_heavy_run(std::size_t begin, std::size_t end, std::size_t n, std::size_t block_rows) {
    const std::size_t first_sample = (begin + block_rows - 1) / block_rows * block_rows;
    return first_sample + block_rows < end && first_sample + block_rows < n;
}

// Reduces like reduce_runs(sorted, plan_runs(...), source, sink) and returns true, or
// returns false without touching anything if the gradient is too large or has a heavy run.
template <class I, class Source, class Sink>
bool counting_reduce(const I* ids, std::size_t n, std::uint64_t num_embeddings,
                     const Source& source, bool visit_absent_ids, Sink& sink) {
    using T = typename Source::value_type;
    const std::size_t dim = source.dim();
    const std::size_t row_bytes = dim * sizeof(T);
    if (num_embeddings * row_bytes > kCacheResidentBytes || n == 0) return false;
    const auto V = static_cast<std::size_t>(num_embeddings);

    // Per-chunk histograms of the ids, then the run each id would have in sorted order.
    const std::size_t chunks = threads_for_bytes(n * sizeof(I));
    std::vector<std::size_t> counts(chunks * V, 0);
    parallel_ranges(n, chunks, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
        std::size_t* count = counts.data() + chunk * V;
        for (std::size_t i = begin; i < end; ++i) ++count[static_cast<std::size_t>(ids[i])];
    });
    std::vector<std::size_t> run_begin(V + 1, 0);
    for (std::size_t v = 0; v < V; ++v) {
        std::size_t total = 0;
        for (std::size_t chunk = 0; chunk < chunks; ++chunk) total += counts[chunk * V + v];
        run_begin[v + 1] = run_begin[v] + total;
    }
    const std::size_t block_rows = heavy_block_rows(dim);
    for (std::size_t v = 0; v < V; ++v) {
        if (is_heavy_run(run_begin[v], run_begin[v + 1], n, block_rows)) return false;
    }

    // Parts: contiguous id ranges of equal cost, as in plan_runs.
    const std::size_t total_cost = n + (visit_absent_ids ? V : 0);
    const std::size_t parts = std::min<std::size_t>(
        threads_for_bytes(n * row_bytes + (visit_absent_ids ? V * row_bytes : 0)), total_cost);
    std::vector<std::size_t> id_bounds(parts + 1, V);
    id_bounds[0] = 0;
    for (std::size_t p = 1, v = 0; p < parts; ++p) {
        const std::size_t target = total_cost * p / parts;
        while (v < V && run_begin[v] + (visit_absent_ids ? v : 0) < target) ++v;
        id_bounds[p] = v;
    }
    std::vector<std::size_t> part_of(V);
    for (std::size_t p = 0; p < parts; ++p) {
        std::fill(part_of.begin() + id_bounds[p], part_of.begin() + id_bounds[p + 1], p);
    }

    // Stable scatter of the positions into their parts: each part's list is in position order.
    std::vector<std::size_t> next(chunks * parts, 0);
    std::size_t running = 0;
    for (std::size_t p = 0; p < parts; ++p) {
        for (std::size_t chunk = 0; chunk < chunks; ++chunk) {
            std::size_t in_part = 0;
            for (std::size_t v = id_bounds[p]; v < id_bounds[p + 1]; ++v) in_part += counts[chunk * V + v];
            next[chunk * parts + p] = running;
            running += in_part;
        }
    }
    const PackedKey codec{bit_width(n - 1)};
    if (codec.position_bits + bit_width(V - 1) > 64) return false;
    ScratchArray<std::uint64_t> keys(n);
    parallel_ranges(n, chunks, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
        std::size_t* slot = next.data() + chunk * parts;
        for (std::size_t i = begin; i < end; ++i) {
            const auto id = static_cast<std::size_t>(ids[i]);
            keys[slot[part_of[id]]++] = codec.make(id, i);
        }
    });

    if constexpr (counts_distinct_ids<Sink>::value) {
        std::vector<std::size_t> distinct_in_part(parts, 0);
        for (std::size_t p = 0; p < parts; ++p) {
            for (std::size_t v = id_bounds[p]; v < id_bounds[p + 1]; ++v) {
                distinct_in_part[p] += run_begin[v + 1] != run_begin[v];
            }
        }
        sink.start(distinct_in_part);
    }

    // Each part streams its positions, accumulating into its slice of the sums.
    ScratchArray<T> sums(V * dim);
    std::vector<std::size_t> seen(V, 0);
    run_tasks(parts, [&](std::size_t p) {
        const std::size_t key_begin = run_begin[id_bounds[p]];
        const std::size_t key_end = run_begin[id_bounds[p + 1]];
        constexpr std::size_t kAhead = 12;
        for (std::size_t k = key_begin; k < key_end; ++k) {
            if (k + kAhead < key_end) {
                prefetch_row(source.address(codec.position(keys[k + kAhead])), row_bytes);
            }
            const std::uint64_t id = codec.id(keys[k]);
            T* sum = sums.get() + id * dim;
            if (seen[id]++ == 0) {
                source.load(sum, codec.position(keys[k]));
            } else {
                source.accumulate(sum, codec.position(keys[k]));
            }
        }
        for (std::size_t v = id_bounds[p]; v < id_bounds[p + 1]; ++v) {
            if (seen[v] != 0) {
                sink.row(p, v, static_cast<const T*>(sums.get() + v * dim), seen[v]);
            } else if (visit_absent_ids) {
                sink.row(p, v, static_cast<const T*>(nullptr), 0);
            }
        }
        sink.finish_part(p);
    }, parts);
    return true;
}

}  // namespace fastembed
