// Pooled lookups (PyTorch's EmbeddingBag): every bag of ids becomes one row, the sum, mean or
// element-wise max of its rows, read straight from the table into the output row (no (N, D)
// intermediate). Also the gradient w.r.t. per-sample weights.
//
// A bag is a range of positions of the flat ids: bag b holds [bounds[b], bounds[b + 1]); the
// caller has checked that the bounds are non-decreasing and within the ids. Entries whose id is
// `padding_idx` are skipped: they add nothing and do not count toward the mean. A bag with no
// other entry gives zeros.
//
// Determinism: each bag is pooled by one thread, in position order, so the split among threads
// never changes the arithmetic.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/check_ids.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

enum class BagMode { sum, mean, max };

// padding_idx value meaning "no padding": ids are never negative once checked.
inline constexpr std::int64_t kNoPadding = -1;

// The bags of a batch: bag b covers positions [bounds[b], bounds[b + 1]) of the flat ids.
struct BagLayout {
    const std::int64_t* bounds;  // num_bags + 1 entries, non-decreasing
    std::size_t num_bags;

    std::size_t begin(std::size_t bag) const { return static_cast<std::size_t>(bounds[bag]); }
    std::size_t end(std::size_t bag) const { return static_cast<std::size_t>(bounds[bag + 1]); }
};

// Runs body(first_bag, last_bag) on contiguous bag ranges holding about equal numbers of ids,
// parts_for(threads) of them; `bytes_per_id` sizes the thread count.
template <class Body>
void parallel_bags(const BagLayout& bags, std::size_t bytes_per_id, Body&& body) {
    if (bags.num_bags == 0) return;
    const std::size_t first = bags.begin(0);
    const std::size_t ids = bags.end(bags.num_bags - 1) - first;
    const std::size_t threads = threads_for_bytes(ids * bytes_per_id + bags.num_bags * 64);
    const std::size_t parts = std::min(parts_for(threads), bags.num_bags);
    std::vector<std::size_t> cut(parts + 1, bags.num_bags);
    cut[0] = 0;
    for (std::size_t p = 1; p < parts; ++p) {
        // The first bag starting at or after this part's share of the ids.
        const auto target = static_cast<std::int64_t>(first + ids * p / parts);
        const std::size_t bag = static_cast<std::size_t>(
            std::lower_bound(bags.bounds, bags.bounds + bags.num_bags, target) - bags.bounds);
        cut[p] = std::max(cut[p - 1], bag);
    }
    run_tasks(parts, [&](std::size_t part) {
        if (cut[part] < cut[part + 1]) body(cut[part], cut[part + 1]);
    }, threads);
}

// Pooling is latency-bound: it can only keep as many row reads in flight as the out-of-order
// window spans rows, so fewer instructions per row mean more rows in flight. On x86-64 the
// pooling loop is therefore also compiled for AVX2 (half the instructions of SSE2 per row; 1.5x
// faster on 1M Zipf ids, D=64) and that copy is used where the CPU has it. Both copies do the
// same additions in the same order (no FMA), so results are bitwise the same on any CPU.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__AVX2__)
#define FASTEMBED_BAG_AVX2_CLONE 1
#define FASTEMBED_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define FASTEMBED_ALWAYS_INLINE inline
#endif

namespace detail {

// Pools bags [first_bag, last_bag) into out; Mode and Weighted are fixed at compile time so the
// inner loops carry no per-element branches on them.
template <BagMode Mode, bool Weighted, class T, class I>
FASTEMBED_ALWAYS_INLINE void pool_bags(const T* weight, std::size_t dim, const I* ids, const BagLayout& bags,
               std::size_t first_bag, std::size_t last_bag, const T* per_sample_weights,
               std::int64_t padding_idx, T* out, std::int64_t* argmax) {
    const std::size_t row_bytes = dim * sizeof(T);
    const std::size_t ahead = prefetch_distance(row_bytes);
    const std::size_t stop = bags.end(last_bag - 1);
    for (std::size_t bag = first_bag; bag < last_bag; ++bag) {
        T* __restrict acc = out + bag * dim;
        std::int64_t* arg = Mode == BagMode::max && argmax != nullptr ? argmax + bag * dim : nullptr;
        std::size_t count = 0;
        for (std::size_t i = bags.begin(bag); i < bags.end(bag); ++i) {
            if (i + ahead < stop) {
                prefetch_row(weight + static_cast<std::size_t>(ids[i + ahead]) * dim, row_bytes);
            }
            if (static_cast<std::int64_t>(ids[i]) == padding_idx) continue;
            const T* __restrict row = weight + static_cast<std::size_t>(ids[i]) * dim;
            if constexpr (Mode == BagMode::max) {
                // Strictly greater: the first position holding the maximum wins, as in PyTorch.
                if (count == 0) {
                    std::copy(row, row + dim, acc);
                    if (arg != nullptr) std::fill(arg, arg + dim, static_cast<std::int64_t>(i));
                } else if (arg != nullptr) {
                    for (std::size_t d = 0; d < dim; ++d) {
                        if (row[d] > acc[d]) {
                            acc[d] = row[d];
                            arg[d] = static_cast<std::int64_t>(i);
                        }
                    }
                } else {
                    for (std::size_t d = 0; d < dim; ++d) acc[d] = row[d] > acc[d] ? row[d] : acc[d];
                }
            } else if constexpr (Weighted) {
                const T scale = per_sample_weights[i];
                if (count == 0) {
                    for (std::size_t d = 0; d < dim; ++d) acc[d] = scale * row[d];
                } else {
                    for (std::size_t d = 0; d < dim; ++d) acc[d] += scale * row[d];
                }
            } else {
                if (count == 0) {
                    std::copy(row, row + dim, acc);
                } else {
                    add_row(acc, row, dim);
                }
            }
            ++count;
        }
        if (count == 0) {
            std::fill(acc, acc + dim, T(0));
            if (arg != nullptr) std::fill(arg, arg + dim, std::int64_t{-1});
        } else if (Mode == BagMode::mean && count > 1) {
            const T size = static_cast<T>(count);
            for (std::size_t d = 0; d < dim; ++d) acc[d] /= size;
        }
    }
}

#ifdef FASTEMBED_BAG_AVX2_CLONE
template <BagMode Mode, bool Weighted, class T, class I>
__attribute__((target("avx2"))) void pool_bags_avx2(
    const T* weight, std::size_t dim, const I* ids, const BagLayout& bags, std::size_t first_bag,
    std::size_t last_bag, const T* per_sample_weights, std::int64_t padding_idx, T* out,
    std::int64_t* argmax) {
    pool_bags<Mode, Weighted>(weight, dim, ids, bags, first_bag, last_bag, per_sample_weights,
                              padding_idx, out, argmax);
}

inline bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2");
    return has;
}
#endif

template <BagMode Mode, bool Weighted, class T, class I>
void pool_bags_on_this_cpu(const T* weight, std::size_t dim, const I* ids, const BagLayout& bags,
                           std::size_t first_bag, std::size_t last_bag, const T* per_sample_weights,
                           std::int64_t padding_idx, T* out, std::int64_t* argmax) {
#ifdef FASTEMBED_BAG_AVX2_CLONE
    if (cpu_has_avx2()) {
        pool_bags_avx2<Mode, Weighted>(weight, dim, ids, bags, first_bag, last_bag,
                                       per_sample_weights, padding_idx, out, argmax);
        return;
    }
#endif
    pool_bags<Mode, Weighted>(weight, dim, ids, bags, first_bag, last_bag, per_sample_weights,
                              padding_idx, out, argmax);
}

}  // namespace detail

// The pooling alone, for ids that have already passed check_ids: out[b, :] = pooled rows of bag
// b. `per_sample_weights` (one per flat id, or null) only with sum. `argmax` (num_bags x dim,
// or null) receives, for max, the position of the id that gave each element, -1 for an empty
// bag.
template <class T, class I>
void pool_rows(const T* weight, std::size_t dim, const I* ids, const BagLayout& bags, BagMode mode,
               const T* per_sample_weights, std::int64_t padding_idx, T* out, std::int64_t* argmax) {
    if (dim == 0) return;
    parallel_bags(bags, dim * sizeof(T) + sizeof(I), [&](std::size_t first, std::size_t last) {
        auto pool = [&](auto mode_tag, auto weighted_tag) {
            detail::pool_bags_on_this_cpu<decltype(mode_tag)::value, decltype(weighted_tag)::value>(
                weight, dim, ids, bags, first, last, per_sample_weights, padding_idx, out, argmax);
        };
        using Unweighted = std::false_type;
        switch (mode) {
            case BagMode::sum:
                if (per_sample_weights != nullptr) {
                    pool(std::integral_constant<BagMode, BagMode::sum>{}, std::true_type{});
                } else {
                    pool(std::integral_constant<BagMode, BagMode::sum>{}, Unweighted{});
                }
                break;
            case BagMode::mean:
                pool(std::integral_constant<BagMode, BagMode::mean>{}, Unweighted{});
                break;
            case BagMode::max:
                pool(std::integral_constant<BagMode, BagMode::max>{}, Unweighted{});
                break;
        }
    });
}

// The forward of a pooled lookup: range check, then pool_rows.
template <class T, class I>
void embedding_bag_forward(const T* weight, std::size_t num_embeddings, std::size_t dim,
                           const I* ids, std::size_t n, const BagLayout& bags, BagMode mode,
                           const T* per_sample_weights, std::int64_t padding_idx, T* out,
                           std::int64_t* argmax) {
    check_ids(ids, n, num_embeddings);
    pool_rows(weight, dim, ids, bags, mode, per_sample_weights, padding_idx, out, argmax);
}

// Gradient w.r.t. per_sample_weights of a weighted sum: out[i] = <grad_output[bag of i],
// weight[ids[i]]>, 0 for padding entries and for ids in no bag. Read the table before any
// optimizer updates it.
template <class T, class I>
void bag_per_sample_weights_grad(const T* grad_output, const T* weight, std::size_t num_embeddings,
                                 std::size_t dim, const I* ids, std::size_t n,
                                 const BagLayout& bags, std::int64_t padding_idx, T* out) {
    check_ids(ids, n, num_embeddings);
    std::fill(out, out + n, T(0));
    parallel_bags(bags, dim * sizeof(T) + sizeof(I) + sizeof(T), [&](std::size_t first, std::size_t last) {
        const std::size_t ahead = prefetch_distance(dim * sizeof(T));
        const std::size_t stop = bags.end(last - 1);
        for (std::size_t bag = first; bag < last; ++bag) {
            const T* __restrict g = grad_output + bag * dim;
            for (std::size_t i = bags.begin(bag); i < bags.end(bag); ++i) {
                if (i + ahead < stop) {
                    prefetch_row(weight + static_cast<std::size_t>(ids[i + ahead]) * dim, dim * sizeof(T));
                }
                if (static_cast<std::int64_t>(ids[i]) == padding_idx) continue;
                const T* __restrict row = weight + static_cast<std::size_t>(ids[i]) * dim;
                T dot = 0;
                for (std::size_t d = 0; d < dim; ++d) dot += g[d] * row[d];
                out[i] = dot;
            }
        }
    });
}

}  // namespace fastembed
