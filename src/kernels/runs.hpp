// Runs of equal ids in sorted order, and the one mechanism every backward is built on:
// reduce each run's gradient rows in position order and hand the sum to a "row sink".
//
// Determinism: a run's sum depends only on the sorted keys, never on how runs are split among
// threads. Ordinary runs are summed row by row in position order. A run too long for one thread
// ("heavy": the id of a very frequent word) is cut into blocks of `block_rows` rows at fixed
// offsets from its start; blocks are summed in parallel and the block sums added in block order.
// Both rules depend on the data alone, so results are bitwise identical for any thread count.
//
// Balance: parts are contiguous id ranges cut so that each carries an equal share of
// cost = (rows summed) + (ids visited), heavy runs counted by their blocks; threads claim parts
// as they free up.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/lanes.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// A sink that must know where each part's ids land among all occurring ids (a sparse gradient
// writes them to consecutive slots) declares `static constexpr bool counts_distinct_ids = true`
// and gets sink.start(distinct_in_part) before any row(): the number of distinct ids that
// occur in each part, parts in id order, not counting sink.uncounted_id() (an id whose row the
// sink drops, such as the padding row; an id beyond every table for none).
template <class Sink, class = void>
struct counts_distinct_ids : std::false_type {};
template <class Sink>
struct counts_distinct_ids<Sink, std::void_t<decltype(Sink::counts_distinct_ids)>>
    : std::bool_constant<Sink::counts_distinct_ids> {};

struct HeavyRun {
    std::uint64_t id;
    std::size_t begin;        // first key of the run
    std::size_t end;          // one past its last key
    std::size_t first_block;  // index of its first block sum
};

// How runs are split among threads; built once per backward from the sorted keys.
struct RunPlan {
    bool visit_absent_ids = false;
    std::size_t block_rows = 0;
    std::vector<HeavyRun> heavy;  // in id order
    std::size_t num_blocks = 0;
    std::vector<std::uint64_t> id_bounds;  // part p owns ids [id_bounds[p], id_bounds[p + 1])
    std::vector<std::size_t> key_bounds;   // and keys [key_bounds[p], key_bounds[p + 1])
    std::size_t threads = 1;               // at most this many threads work on the parts

    std::size_t num_parts() const { return id_bounds.size() - 1; }
};

// Block length of heavy runs: fixed by the data (never by the thread count), and long enough
// that the block sums take at most half as many elements as the gradient itself.
inline std::size_t heavy_block_rows(std::size_t dim) {
    return std::max<std::size_t>(std::size_t{1} << 12, 2 * dim);
}

// `visit_absent_ids`: whether the sink wants a call for ids that do not occur (a dense
// gradient writes their zero rows); if not, cost is spent on occurring ids only.
template <class Sorted>
RunPlan plan_runs(const Sorted& sorted, std::uint64_t num_embeddings, std::size_t dim,
                  std::size_t row_bytes, bool visit_absent_ids) {
    RunPlan plan;
    plan.visit_absent_ids = visit_absent_ids;
    const std::size_t n = sorted.size();
    plan.block_rows = heavy_block_rows(dim);

    // A run is heavy when it covers two consecutive sample points block_rows apart: every run
    // of at least 2 * block_rows rows does, and the test reads only n / block_rows keys.
    for (std::size_t k = 0; k + plan.block_rows < n; k += plan.block_rows) {
        const std::uint64_t id = sorted.id(k);
        if (id != sorted.id(k + plan.block_rows)) continue;
        if (!plan.heavy.empty() && plan.heavy.back().id == id) continue;
        const std::size_t begin = sorted.lower_bound(id);
        const std::size_t end = sorted.lower_bound(id + 1);
        plan.heavy.push_back({id, begin, end, plan.num_blocks});
        plan.num_blocks += (end - begin + plan.block_rows - 1) / plan.block_rows;
    }

    // cost(v): work for the ids below v; heavy runs cost their block count, not their length.
    std::vector<std::size_t> heavy_rows_before(plan.heavy.size() + 1, 0);
    for (std::size_t h = 0; h < plan.heavy.size(); ++h) {
        heavy_rows_before[h + 1] = heavy_rows_before[h] + (plan.heavy[h].end - plan.heavy[h].begin);
    }
    auto cost = [&](std::uint64_t v) {
        const std::size_t h = static_cast<std::size_t>(
            std::partition_point(plan.heavy.begin(), plan.heavy.end(),
                                 [v](const HeavyRun& run) { return run.id < v; }) -
            plan.heavy.begin());
        const std::size_t blocks = h < plan.heavy.size() ? plan.heavy[h].first_block : plan.num_blocks;
        return sorted.lower_bound(v) - heavy_rows_before[h] + blocks +
               (visit_absent_ids ? static_cast<std::size_t>(v) : 0);
    };

    const std::size_t total_cost = cost(num_embeddings);
    const std::size_t threads =
        threads_for_bytes(n * row_bytes + (visit_absent_ids ? num_embeddings * row_bytes : 0));
    plan.threads = threads;
    // The cost weighs a row read like a row written, but a read of a scattered row waits on
    // memory while a written row streams out: on Zipf ids the part holding the frequent ids took
    // 1.7x as long as the other (13 vs 7.5 ms). More parts than threads absorb that: 4 per
    // thread brought 2 threads from 16.3 to 14.3 ms there.
    const std::size_t parts = std::min(parts_for(threads), std::max<std::size_t>(total_cost, 1));
    plan.id_bounds.assign(parts + 1, num_embeddings);
    plan.key_bounds.assign(parts + 1, n);
    plan.id_bounds[0] = 0;
    plan.key_bounds[0] = 0;
    for (std::size_t p = 1; p < parts; ++p) {
        const std::size_t target = total_cost * p / parts;
        std::uint64_t lo = plan.id_bounds[p - 1];
        std::uint64_t hi = num_embeddings;
        while (lo < hi) {  // smallest v with cost(v) >= target
            const std::uint64_t mid = lo + (hi - lo) / 2;
            if (cost(mid) < target) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        plan.id_bounds[p] = lo;
        plan.key_bounds[p] = sorted.lower_bound(lo);
    }
    return plan;
}

// Hands sink.row(part, id, sum, count) the sum of the source's rows at the positions of every
// run, in id order within each part (`sum` is null and count 0 for an absent id, when the plan
// visits them), then sink.finish_part(part). `sum` may point into the source's memory: sinks
// only read it.
template <class Sorted, class Source, class Sink>
void reduce_runs(const Sorted& sorted, const RunPlan& plan, const Source& source, Sink& sink) {
    using T = typename Source::value_type;
    const std::size_t dim = source.dim();
    const std::size_t row_bytes = dim * sizeof(T);
    const bool visit_absent_ids = plan.visit_absent_ids;
    const std::size_t ahead = prefetch_distance(row_bytes, sorted.size() * row_bytes);
    auto prefetch_key = [&](std::size_t k, std::size_t end) {
        if (k + ahead < end) prefetch_row(source.address(sorted.position(k + ahead)), row_bytes);
    };

    if constexpr (counts_distinct_ids<Sink>::value) {
        std::vector<std::size_t> distinct_in_part(plan.num_parts(), 0);
        const std::uint64_t uncounted = sink.uncounted_id();
        run_tasks(plan.num_parts(), [&](std::size_t part) {
            const std::size_t begin = plan.key_bounds[part];
            std::size_t distinct = 0;
            for (std::size_t k = begin; k < plan.key_bounds[part + 1]; ++k) {
                const std::uint64_t id = sorted.id(k);
                distinct += (k == begin || id != sorted.id(k - 1)) && id != uncounted;
            }
            distinct_in_part[part] = distinct;
        }, plan.threads);
        sink.start(distinct_in_part);
    }

    std::vector<T> block_sums(plan.num_blocks * dim);
    if (plan.num_blocks != 0) {
        std::vector<std::size_t> block_begin(plan.num_blocks + 1);
        for (const HeavyRun& run : plan.heavy) {
            for (std::size_t b = 0; run.begin + b * plan.block_rows < run.end; ++b) {
                block_begin[run.first_block + b] = run.begin + b * plan.block_rows;
            }
        }
        auto sum_block = [&](std::size_t block) FASTEMBED_INLINE_LAMBDA {
            const HeavyRun& run = *std::prev(std::upper_bound(
                plan.heavy.begin(), plan.heavy.end(), block,
                [](std::size_t b, const HeavyRun& r) { return b < r.first_block; }));
            const std::size_t begin = block_begin[block];
            const std::size_t end = std::min(run.end, begin + plan.block_rows);
            T* sum = block_sums.data() + block * dim;
            source.load(sum, sorted.position(begin));
            for (std::size_t k = begin + 1; k < end; ++k) {
                prefetch_key(k, end);
                source.accumulate(sum, sorted.position(k));
            }
        };
        run_tasks(plan.num_blocks, [&](std::size_t block) {
            on_this_cpu([&](auto) FASTEMBED_INLINE_LAMBDA { sum_block(block); });
        });
    }

    auto reduce_part = [&](std::size_t part) FASTEMBED_INLINE_LAMBDA {
        std::vector<T> acc(dim);
        const std::size_t key_end = plan.key_bounds[part + 1];
        auto heavy = std::lower_bound(
            plan.heavy.begin(), plan.heavy.end(), plan.key_bounds[part],
            [](const HeavyRun& run, std::size_t key) { return run.begin < key; });
        std::uint64_t next_id = plan.id_bounds[part];
        std::size_t k = plan.key_bounds[part];
        while (k < key_end) {
            const std::uint64_t id = sorted.id(k);
            if (visit_absent_ids) {
                for (; next_id < id; ++next_id) sink.row(part, next_id, static_cast<const T*>(nullptr), 0);
            }
            const T* sum = acc.data();
            std::size_t run_end;
            if (heavy != plan.heavy.end() && heavy->begin == k) {
                run_end = heavy->end;
                const std::size_t blocks = (run_end - k + plan.block_rows - 1) / plan.block_rows;
                const T* first = block_sums.data() + heavy->first_block * dim;
                std::copy(first, first + dim, acc.data());
                for (std::size_t b = 1; b < blocks; ++b) add_row(acc.data(), first + b * dim, dim);
                ++heavy;
            } else {
                prefetch_key(k, key_end);
                run_end = k + 1;
                const bool single = run_end == key_end || sorted.id(run_end) != id;
                const T* direct = single ? source.direct(sorted.position(k)) : nullptr;
                if (direct != nullptr) {
                    sum = direct;
                } else {
                    source.load(acc.data(), sorted.position(k));
                    for (; run_end < key_end && sorted.id(run_end) == id; ++run_end) {
                        prefetch_key(run_end, key_end);
                        source.accumulate(acc.data(), sorted.position(run_end));
                    }
                }
            }
            sink.row(part, id, sum, run_end - k);
            next_id = id + 1;
            k = run_end;
        }
        if (visit_absent_ids) {
            for (; next_id < plan.id_bounds[part + 1]; ++next_id) {
                sink.row(part, next_id, static_cast<const T*>(nullptr), 0);
            }
        }
        sink.finish_part(part);
    };
    run_tasks(plan.num_parts(), [&](std::size_t part) {
        on_this_cpu([&](auto) FASTEMBED_INLINE_LAMBDA { reduce_part(part); });
    }, plan.threads);
}

}  // namespace fastembed
