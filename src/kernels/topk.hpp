// Top-k search: for each query, the k table rows with the highest score (dot product or cosine
// similarity), best first, ties broken by the smaller id.
//
// Scores are computed a block at a time (a block of queries against a block of table rows) by a
// matrix product the caller supplies (BLAS in the extension, a plain loop in the C++ tests), and
// each block is scanned into per-query bounded heaps while it is still in cache, so the (Q, V)
// score matrix never exists. A score below the worst one kept cannot enter: the scan compares
// 16 scores at a time against that threshold and looks closer only at a chunk where one reaches
// it, so past the first few blocks the selection costs little beyond the product.
//
// Determinism: the block sizes come from the shape alone, so every score is produced by the same
// product call (same operands, same summation) whatever the thread count, and the selection is
// exact under a total order (score, then id), so neither the split of the table among threads
// nor the order in which partial results are merged can change the result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/buffer.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

enum class TopkMetric { dot, cosine };

template <class T>
struct Scored {
    T score;
    std::int64_t id;
};

// The order of results: higher score first, NaN after every number, then the smaller id.
template <class T>
bool ranks_before(const Scored<T>& a, const Scored<T>& b) {
    const bool a_nan = std::isnan(a.score);
    const bool b_nan = std::isnan(b.score);
    if (a_nan != b_nan) return b_nan;
    if (!a_nan && a.score != b.score) return a.score > b.score;
    return a.id < b.id;
}

// The best k candidates offered so far, kept in caller-owned slots as a heap whose front is the
// worst of them.
template <class T>
class BoundedHeap {
  public:
    BoundedHeap(Scored<T>* slots, std::size_t k) : slots_(slots), k_(k) {}

    // A score below this cannot enter. -inf while there is room (NaN enters too: !(NaN < x)).
    T threshold() const {
        return size_ < k_ ? -std::numeric_limits<T>::infinity() : slots_[0].score;
    }

    void offer(const Scored<T>& candidate) {
        if (size_ < k_) {
            slots_[size_++] = candidate;
            std::push_heap(slots_, slots_ + size_, ranks_before<T>);
        } else if (ranks_before(candidate, slots_[0])) {
            std::pop_heap(slots_, slots_ + k_, ranks_before<T>);
            slots_[k_ - 1] = candidate;
            std::push_heap(slots_, slots_ + k_, ranks_before<T>);
        }
    }

    // Writes the kept candidates best first, then (-1, -inf) for each missing one (a query that
    // excluded so many rows that fewer than k remain).
    void write_sorted(std::int64_t* ids, T* scores) {
        std::sort_heap(slots_, slots_ + size_, ranks_before<T>);
        for (std::size_t i = 0; i < k_; ++i) {
            ids[i] = i < size_ ? slots_[i].id : -1;
            scores[i] = i < size_ ? slots_[i].score : -std::numeric_limits<T>::infinity();
        }
    }

    std::size_t size() const { return size_; }
    const Scored<T>* begin() const { return slots_; }
    const Scored<T>* end() const { return slots_ + size_; }

  private:
    Scored<T>* slots_;
    std::size_t k_;
    std::size_t size_ = 0;
};

// Offers `heap` the rows first_id, first_id + 1, ..., first_id + n - 1, whose scores are
// score_at(0), ..., score_at(n - 1), skipping the ids in exclude[0, num_excluded). Only scores
// that reach the heap's threshold are looked at one by one.
template <class T, class ScoreAt>
void offer_scores(ScoreAt score_at, std::size_t n, std::int64_t first_id, const std::int64_t* exclude,
                  std::size_t num_excluded, BoundedHeap<T>& heap) {
    constexpr std::size_t kChunk = 16;
    T threshold = heap.threshold();
    const auto offer_range = [&](std::size_t begin, std::size_t end) {
        for (std::size_t j = begin; j < end; ++j) {
            const T score = score_at(j);
            if (score < threshold) continue;
            const std::int64_t id = first_id + static_cast<std::int64_t>(j);
            if (std::find(exclude, exclude + num_excluded, id) != exclude + num_excluded) continue;
            heap.offer({score, id});
            threshold = heap.threshold();
        }
    };
    std::size_t begin = 0;
    for (; begin + kChunk <= n; begin += kChunk) {
        unsigned reached = 0;  // branch-free, so the 16 comparisons vectorise
        for (std::size_t j = begin; j < begin + kChunk; ++j) reached |= !(score_at(j) < threshold);
        if (reached != 0) offer_range(begin, begin + kChunk);
    }
    offer_range(begin, n);
}

// How a search is cut into product calls and tasks.
struct TopkPlan {
    std::size_t query_block;  // queries per product call
    std::size_t row_block;    // table rows per product call
    std::size_t query_blocks;
    std::size_t row_blocks;
    std::size_t chunks;   // contiguous runs of row blocks searched as separate tasks
    std::size_t threads;
};

// Queries per product call: enough that BLAS reuses each table block many times.
inline constexpr std::size_t kTopkQueryBlock = 256;
// Scores per product call (512 KiB of float32): the block is scanned from the L2 cache.
inline constexpr std::size_t kTopkScoreBlock = std::size_t{1} << 17;
// Table bytes per product call: a block's norms are computed while it is in cache.
// (1000 queries over 100k x 100 float32 on one core: 0.21-0.23 s of CPU for block sizes from
// 128 to 512 queries and 32k to 256k scores, i.e. near the product alone; the sizes matter little.)
inline constexpr std::size_t kTopkRowBlockBytes = std::size_t{1} << 18;
// Heap slots per query block (4 MiB of Scored<float>); a large k takes fewer queries per block.
inline constexpr std::size_t kTopkHeapSlots = std::size_t{1} << 18;
// Partial results kept for merging when the table is split among tasks.
inline constexpr std::size_t kTopkPartialSlots = std::size_t{1} << 22;

template <class T>
TopkPlan plan_topk(std::size_t num_rows, std::size_t dim, std::size_t num_queries, std::size_t k) {
    TopkPlan plan{};
    plan.query_block = std::max<std::size_t>(
        1, std::min({num_queries, kTopkQueryBlock, kTopkHeapSlots / k}));
    const std::size_t row_bytes = std::max<std::size_t>(1, dim) * sizeof(T);
    plan.row_block = std::max<std::size_t>(
        1, std::min({num_rows, kTopkScoreBlock / plan.query_block, kTopkRowBlockBytes / row_bytes}));
    plan.query_blocks = (num_queries + plan.query_block - 1) / plan.query_block;
    plan.row_blocks = (num_rows + plan.row_block - 1) / plan.row_block;
    // Everything below may depend on the thread count: it decides who computes which block,
    // never what a block is.
    plan.threads = threads_for_bytes(plan.query_blocks * num_rows * row_bytes);
    const std::size_t parts = parts_for(plan.threads);
    plan.chunks = std::min(plan.row_blocks, (parts + plan.query_blocks - 1) / plan.query_blocks);
    plan.chunks = std::max<std::size_t>(
        1, std::min(plan.chunks, kTopkPartialSlots / std::max<std::size_t>(1, num_queries * k)));
    return plan;
}

// Sum of the squares of a row in Acc, in 16 interleaved lanes added pairwise in a fixed order:
// the lanes vectorise. Every index into `lanes` is a constant once the loops unroll, so they stay
// in registers (a variable index, for the tail, put them on the stack: several times slower).
template <class Acc, class T>
Acc sum_of_squares(const T* row, std::size_t dim) {
    constexpr std::size_t kLanes = 16;
    Acc lanes[kLanes] = {};
    const auto add_squares = [&lanes](const T* values) {
        for (std::size_t lane = 0; lane < kLanes; ++lane) {
            const auto x = static_cast<Acc>(values[lane]);
            lanes[lane] += x * x;
        }
    };
    std::size_t d = 0;
    for (; d + kLanes <= dim; d += kLanes) add_squares(row + d);
    if (d < dim) {
        T tail[kLanes] = {};
        std::copy(row + d, row + dim, tail);
        add_squares(tail);
    }
    for (std::size_t width = kLanes / 2; width > 0; width /= 2) {
        for (std::size_t lane = 0; lane < width; ++lane) lanes[lane] += lanes[lane + width];
    }
    return lanes[0];
}

// 1 / |row| for each of `rows` rows (0 for a zero row, whose cosine is then 0 instead of 0/0).
// Squares are summed in T (float32 in double cost 2x a single query's whole product); a float
// sum that overflowed or fell below the normal range is summed again in double.
template <class T>
void inverse_norms(const T* table_rows, std::size_t rows, std::size_t dim, T* out) {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = table_rows + r * dim;
        const T sum = sum_of_squares<T>(row, dim);
        const bool in_range =
            sum >= std::numeric_limits<T>::min() && sum <= std::numeric_limits<T>::max();
        const double total = in_range ? static_cast<double>(sum) : sum_of_squares<double>(row, dim);
        out[r] = total > 0 ? static_cast<T>(1.0 / std::sqrt(total)) : T(0);
    }
}

// For each of the Q queries (rows of `queries`, (Q, dim)), the k rows of `table` ((V, dim)) with
// the highest score, best first: ids into ids_out and scores into scores_out, both (Q, k). The
// cosine is dot(q / |q|, row) / |row| (a zero query or row scores 0). exclude: (Q, num_excluded)
// ids each query skips, -1 for none. Requires 1 <= k <= V and exclude ids in [-1, V).
// product(a, m, b, n, dim, c) must set c[i * n + j] = dot(a[i, :], b[j, :]) for row-major a
// (m, dim) and b (n, dim), identically for identical operands, and be callable from any thread.
template <class T, class Product>
void topk_search(const T* table, std::size_t num_rows, std::size_t dim, const T* queries,
                 std::size_t num_queries, std::size_t k, TopkMetric metric,
                 const std::int64_t* exclude, std::size_t num_excluded, std::int64_t* ids_out,
                 T* scores_out, const Product& product) {
    if (num_queries == 0) return;
    const TopkPlan plan = plan_topk<T>(num_rows, dim, num_queries, k);
    const bool cosine = metric == TopkMetric::cosine;

    // Unit queries (a zero query stays zero).
    ScratchArray<T> unit_queries(cosine ? num_queries * dim : 0);
    if (cosine) {
        parallel_ranges(num_queries, threads_for_bytes(num_queries * dim * sizeof(T)),
                        [&](std::size_t, std::size_t begin, std::size_t end) {
            for (std::size_t q = begin; q < end; ++q) {
                T scale;
                inverse_norms(queries + q * dim, 1, dim, &scale);
                for (std::size_t d = 0; d < dim; ++d) {
                    unit_queries[q * dim + d] = queries[q * dim + d] * scale;
                }
            }
        });
    }
    const T* searched = cosine ? unit_queries.get() : queries;

    ScratchArray<Scored<T>> partial(plan.chunks > 1 ? plan.chunks * num_queries * k : 0);
    ScratchArray<std::size_t> partial_sizes(plan.chunks > 1 ? plan.chunks * num_queries : 0);

    run_tasks(
        plan.query_blocks * plan.chunks,
        [&](std::size_t task) {
            const std::size_t query_block = task / plan.chunks;
            const std::size_t chunk = task % plan.chunks;
            const std::size_t first_query = query_block * plan.query_block;
            const std::size_t queries_here = std::min(plan.query_block, num_queries - first_query);
            const std::size_t first_block = plan.row_blocks * chunk / plan.chunks;
            const std::size_t end_block = plan.row_blocks * (chunk + 1) / plan.chunks;

            ScratchArray<T> products(queries_here * plan.row_block);
            // The block's inverse row norms, computed by every task that reads the block, right
            // after its product has brought it into cache: never stale, and no pass of its own.
            ScratchArray<T> scales(cosine ? plan.row_block : 0);
            ScratchArray<Scored<T>> slots(queries_here * k);
            std::vector<BoundedHeap<T>> heaps;
            heaps.reserve(queries_here);
            for (std::size_t i = 0; i < queries_here; ++i) heaps.emplace_back(slots.get() + i * k, k);

            for (std::size_t block = first_block; block < end_block; ++block) {
                const std::size_t first_row = block * plan.row_block;
                const std::size_t rows = std::min(plan.row_block, num_rows - first_row);
                const T* block_rows = table + first_row * dim;
                if (dim == 0) {  // BLAS refuses an empty inner dimension
                    std::fill(products.get(), products.get() + queries_here * rows, T(0));
                } else {
                    product(searched + first_query * dim, queries_here, block_rows, rows, dim,
                            products.get());
                }
                if (cosine) inverse_norms(block_rows, rows, dim, scales.get());
                for (std::size_t i = 0; i < queries_here; ++i) {
                    const T* dots = products.get() + i * rows;
                    const T* row_scales = scales.get();
                    const std::int64_t* skipped = exclude + (first_query + i) * num_excluded;
                    const auto first_id = static_cast<std::int64_t>(first_row);
                    if (cosine) {
                        offer_scores<T>([&](std::size_t j) { return dots[j] * row_scales[j]; }, rows,
                                        first_id, skipped, num_excluded, heaps[i]);
                    } else {
                        offer_scores<T>([&](std::size_t j) { return dots[j]; }, rows, first_id,
                                        skipped, num_excluded, heaps[i]);
                    }
                }
            }

            for (std::size_t i = 0; i < queries_here; ++i) {
                const std::size_t q = first_query + i;
                if (plan.chunks == 1) {
                    heaps[i].write_sorted(ids_out + q * k, scores_out + q * k);
                } else {
                    const std::size_t at = chunk * num_queries + q;
                    std::copy(heaps[i].begin(), heaps[i].end(), partial.get() + at * k);
                    partial_sizes[at] = heaps[i].size();
                }
            }
        },
        plan.threads);

    if (plan.chunks == 1) return;
    parallel_ranges(num_queries, threads_for_bytes(plan.chunks * num_queries * k * sizeof(Scored<T>)),
                    [&](std::size_t, std::size_t begin, std::size_t end) {
        ScratchArray<Scored<T>> slots(k);
        for (std::size_t q = begin; q < end; ++q) {
            BoundedHeap<T> merged(slots.get(), k);
            for (std::size_t chunk = 0; chunk < plan.chunks; ++chunk) {
                const std::size_t at = chunk * num_queries + q;
                const Scored<T>* found = partial.get() + at * k;
                for (std::size_t i = 0; i < partial_sizes[at]; ++i) merged.offer(found[i]);
            }
            merged.write_sorted(ids_out + q * k, scores_out + q * k);
        }
    });
}

}  // namespace fastembed
