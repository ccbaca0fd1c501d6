// Pooled lookups (PyTorch's EmbeddingBag): every bag of ids becomes one row, the sum, mean or
// element-wise max of its rows, read straight from the table into the output row (no (N, D)
// intermediate). Also the gradient w.r.t. per-sample weights.
//
// A bag is a range of positions of the flat ids: bag b holds [bounds[b], bounds[b + 1]); the
// caller has checked that the bounds are non-decreasing and within the ids. Entries whose id is
// `padding_idx` are skipped: they add nothing and do not count toward the mean. A bag with no
// other entry gives zeros.
//
// The pooling loop (as FBGEMM's): a bag's output row is cut into column blocks of a few vector
// registers; for each block the bag's rows are read and combined into an accumulator that stays
// in registers, and the block is stored once per bag. Every output element is still the rows'
// values combined in position order (added to a negative zero, which changes no bit, or, for
// max, the first copied; no FMA, but the quantized readers' exact ones: a quantized sum is the
// FMAs of codes times scales, in position order, plus the biases summed apart), so the
// block width, the position chunks and the CPU never change a bit.
//
// Determinism: each bag is pooled by one thread, in position order, so the split among threads
// never changes the arithmetic either.
//
// Adding a row reader (a table stored another way: float16, 8-bit row-wise quantized, ...):
// the loop reads the table only through a reader, a small class with
//     using value_type = T;               // what rows are pooled in: float or double (= out's)
//     std::size_t num_rows() const;       // rows of the table
//     std::size_t dim() const;            // elements per row
//     std::size_t row_bytes() const;      // bytes of one stored row (the prefetched span)
//     const void* row_address(std::size_t id) const;  // where row `id` starts
//     using row_type = ...;               // a row from some column on, as `load` reads it
//     template <Isa isa = Isa::baseline>  // the copy of the loop calling it (lanes.hpp)
//     row_type row_at(std::size_t id, std::size_t col) const;  // row `id` from column `col`
//     template <Isa isa = Isa::baseline>
//     FASTEMBED_ALWAYS_INLINE void load(const row_type& row, std::size_t offset,
//                                       std::size_t width, T* values) const;
//         // values[j] = the row's element col + offset + j, j < width
// and, where element j of a row is code_j * scale + bias (quantized rows), optionally
//     template <Isa isa = Isa::baseline>
//     FASTEMBED_ALWAYS_INLINE void add_codes_times(const row_type& row, std::size_t offset,
//                                                  std::size_t width, T scale, T* sums) const;
//         // sums[j] = fma(code col + offset + j, scale, sums[j]), j < width
// with row_type's `scale` and `bias`: sums and means then add each row's codes times its
// (weighted) scale and sum the biases apart, once per bag (fuses_biases).
// (see PlainRows below: float32, float64, float16 and bfloat16 tables; QuantizedRows in
// quantize.hpp: 8-bit and 4-bit rows dequantized in registers). The loop finds each row once
// (row_at: its address; a quantized row's scale and bias too) and loads its vectors at
// constant offsets from it: computed per vector as table + (id * dim + col + offset), GCC kept
// the eight `col + offset` sums of a block in registers and spilled them, two dozen extra
// instructions per row. `load` must be always-inline: the loop calls it with a constant width
// for whole blocks, which turns values[] into registers, and the AVX2 and AVX-512 copies of the
// loop only vectorise what is inlined into them; with Isa::avx2 or Isa::avx512 it may convert
// with those intrinsics (lanes.hpp; an AVX-512 reader converts whole 16-lane vectors: two
// 8-lane stores read back as one vector stall store forwarding). Then call
// pool_rows_with(reader, ...).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/check_ids.hpp"
#include "kernels/half.hpp"
#include "kernels/host_caches.hpp"
#include "kernels/lanes.hpp"
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
    // Ids in some bag.
    std::size_t num_ids() const { return num_bags == 0 ? 0 : end(num_bags - 1) - begin(0); }
};

// Runs body(first_bag, last_bag) on contiguous bag ranges holding about equal numbers of ids,
// parts_for(threads) of them; `bytes_per_id` sizes the thread count.
template <class Body>
void parallel_bags(const BagLayout& bags, std::size_t bytes_per_id, Body&& body) {
    if (bags.num_bags == 0) return;
    const std::size_t first = bags.begin(0);
    const std::size_t ids = bags.num_ids();
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
// faster on 1M Zipf ids, D=64), with F16C for float16 rows, and for AVX-512 (half AVX2's again:
// 8-bit bags of 1M Zipf ids, 3.6 -> 2.9 ms), and the widest copy the CPU runs is used
// (on_this_cpu, lanes.hpp). All copies do the same additions in the same order (no FMA), and
// readers convert exactly or with the same exactly rounded operations, so results are bitwise
// the same on any CPU.

// The row reader of a plain table of storage S (float32, float64, float16 or bfloat16;
// C-contiguous, dim elements per row): elements are widened to S's arithmetic type (half.hpp)
// as they are loaded, so float16 and bfloat16 bags are pooled in float32 registers.
template <class S>
class PlainRows {
  public:
    using value_type = accumulator_t<S>;

    PlainRows(const S* table, std::size_t num_rows, std::size_t dim)
        : table_(table), num_rows_(num_rows), dim_(dim) {}

    std::size_t num_rows() const { return num_rows_; }
    std::size_t dim() const { return dim_; }
    std::size_t row_bytes() const { return dim_ * sizeof(S); }
    const void* row_address(std::size_t id) const { return table_ + id * dim_; }
    using row_type = const S*;
    template <Isa isa = Isa::baseline>
    row_type row_at(std::size_t id, std::size_t col) const {
        return table_ + id * dim_ + col;
    }
    template <Isa isa = Isa::baseline>
    FASTEMBED_ALWAYS_INLINE void load(row_type row, std::size_t offset, std::size_t width,
                                      value_type* values) const {
        widen_row<isa>(values, row + offset, width);
    }

  private:
    const S* table_;
    std::size_t num_rows_;
    std::size_t dim_;
};

// Bytes of one bag's rows that the passes over its column blocks re-read from the cache: a bag
// whose rows take several blocks is pooled in chunks of positions whose rows fit in this, each
// chunk's partial result stored in the output row between chunks (exactly: a store and a load
// change no bit). Half the L1d (the other half holds the rows prefetched ahead); only speed
// depends on it.
inline std::size_t pooling_chunk_bytes() { return host_caches().used.l1d / 2; }

namespace detail {

// The accumulator's registers: GCC/Clang vectors of `Bytes` bytes of T (one lane of T elsewhere),
// and Mask, the same lanes as integers of T's width (a comparison's result; for max it also
// holds the positions of the maxima, relative to the chunk); `isa`, the instruction set of the
// copy of the loop they are used in (for the row reader's conversions).
#if defined(__GNUC__) || defined(__clang__)
template <class T, std::size_t Bytes, Isa Set>
struct Vector {
    static constexpr Isa isa = Set;
    using value_type = T;
    typedef T type __attribute__((vector_size(Bytes)));
    typedef decltype(type{} > type{}) mask;
    typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> lane_int;
    static constexpr std::size_t lanes = Bytes / sizeof(T);
};
#else
template <class T, std::size_t Bytes, Isa Set>
struct Vector {
    static constexpr Isa isa = Set;
    using value_type = T;
    using type = T;
    using lane_int = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
    using mask = lane_int;
    static constexpr std::size_t lanes = 1;
};
#endif

// Helpers that pass vectors by reference: a 32-byte vector by value in the signature of a
// function compiled without AVX changes its ABI (GCC warns), although these are always inlined.

// to = from in the lanes where `mask` is set (all ones; true in the one-lane fallback).
template <class V, class M>
FASTEMBED_ALWAYS_INLINE void blend(V& to, const M& mask, const V& from) {
    if constexpr (std::is_arithmetic_v<V>) {
        if (mask) to = from;
    } else {
        M bits_to, bits_from;
        std::memcpy(&bits_to, &to, sizeof to);
        std::memcpy(&bits_from, &from, sizeof from);
        bits_to = (mask & bits_from) | (~mask & bits_to);
        std::memcpy(&to, &bits_to, sizeof to);
    }
}

// Every lane of `to` = value.
template <class Vec>
FASTEMBED_ALWAYS_INLINE void fill_lanes(typename Vec::mask& to, std::int64_t value) {
    to = typename Vec::mask{} + static_cast<typename Vec::lane_int>(value);
}

// to = the first `n` (at most Vec::lanes) elements of `from`, zeros after them...
template <class Vec, class T>
FASTEMBED_ALWAYS_INLINE void load_vector(typename Vec::type& to, const T* from, std::size_t n) {
    T values[Vec::lanes];
    for (std::size_t j = 0; j < Vec::lanes; ++j) values[j] = j < n ? from[j] : T(0);
    std::memcpy(&to, values, sizeof to);
}

// ...and back, rounded once to Out where Out is a narrower storage type (half.hpp).
template <class Vec, class Out>
FASTEMBED_ALWAYS_INLINE void store_vector(Out* to, const typename Vec::type& from, std::size_t n) {
    using T = typename Vec::value_type;
    T values[Vec::lanes];
    std::memcpy(values, &from, sizeof from);
    if constexpr (std::is_same_v<Out, T>) {
        for (std::size_t j = 0; j < n; ++j) to[j] = values[j];
    } else {
        // (The min shows GCC that lane groups wider than the vector never run: -Warray-bounds.)
        narrow_row<Vec::isa>(to, values, std::min(n, Vec::lanes));
    }
}

// Everything a pooling loop needs besides the bag range; T is the reader's value_type, Out the
// output's storage: T, or float16 / bfloat16 for T = float.
template <class Reader, class I, class Out>
struct BagJob {
    using T = typename Reader::value_type;
    static_assert(std::is_same_v<accumulator_t<Out>, T>, "bags are stored in their sums' type or narrower");
    const Reader& rows;
    const I* ids;
    const BagLayout& bags;
    const T* per_sample_weights;  // only with sum, else null
    std::int64_t padding_idx;
    bool mean;                // divide each bag's sum by its entries (mode='mean')
    Out* out;
    std::int64_t* argmax;     // only with max, may be null
    std::size_t ahead;        // prefetch distance, in positions; 0: no prefetching
    CacheLevel prefetch_level;
    std::size_t chunk_rows;   // positions per chunk (see pooling_chunk_bytes)
    // Writes the output's rows: a large output streams around the cache, each row whole once
    // its bag is pooled (pool_bags).
    RowWriter writer;
    // Ids at or past this are out of range: skipped, and bad_id set once the thread's bags are
    // pooled (the table's rows; kIdsChecked where the caller checked them).
    std::uint64_t num_rows;
    std::atomic<bool>* bad_id;
};

// Where one bag's result goes: its output row, and the row its partial sums wait in between
// chunks (the output row itself when it is stored in the sums' type; exact: a store and a load
// change no bit).
template <class T, class Out>
struct BagRows {
    Out* out;
    T* partial;
    std::int64_t* argmax;  // null unless max tracks its positions
};

// What a bag's earlier chunks pooled: how many entries, and with a reader whose sums leave the
// rows' biases out (fuses_biases), the sum of those biases, added once when the bag is finished.
template <class T>
struct Pooled {
    std::size_t count;
    T biases;
};

// Whether sums read `Reader` through add_codes_times (see the top of this file).
template <class Reader, class = void>
struct fuses_biases : std::false_type {};
template <class Reader>
struct fuses_biases<Reader, std::void_t<decltype(&Reader::template add_codes_times<Isa::baseline>)>>
    : std::true_type {};

// Pools columns [col, col + width) of positions [begin, end) of one bag into Count vectors of
// Vec (width == Count * lanes, or less than one vector's lanes when Count == 1 and !Whole):
// rows are added, or with Max their element-wise maximum kept. `before.count` entries of the bag
// were pooled before, their partial result in rows.partial and rows.argmax. Returns what is
// pooled including this chunk's entries; an id at or past job.num_rows is skipped and sets
// bad_id. On the bag's last chunk (`last`), finishes the bag (the biases of a fused sum, mean's
// division, zeros for an empty bag) into rows.out.
template <bool Max, bool Weighted, bool Track, class Vec, std::size_t Count, bool Whole,
          class Reader, class I, class Out>
FASTEMBED_ALWAYS_INLINE Pooled<typename Reader::value_type> pool_block(const BagJob<Reader, I, Out>& job, std::size_t begin,
                                               std::size_t end, std::size_t stop, bool prefetch,
                                               std::size_t col, std::size_t width,
                                               Pooled<typename Reader::value_type> before, bool last,
                                               const BagRows<typename Reader::value_type, Out>& rows,
                                               bool& bad_id) {
    using T = typename Reader::value_type;
    using V = typename Vec::type;
    using M = typename Vec::mask;
    constexpr std::size_t kLanes = Vec::lanes;
    constexpr Isa kIsa = Vec::isa;
    // A quantized row's elements are code * scale + bias: a sum adds each row's codes times its
    // scale into the accumulator, one FMA a vector, and sums the biases apart, added once per
    // bag; one vector instruction fewer per vector than dequantizing and adding. Sum bags of 1M
    // ids over 1M x 64 8-bit rows, AVX2, Zen 3, 2 threads, both builds in one process: Zipf ids
    // 1.03-1.11x faster, a cached table 1.22-1.24x, weighted 1.15-1.19x, 4-bit rows 1.09x.
    constexpr bool kFusedSum = !Max && fuses_biases<Reader>::value;
    const std::size_t tail = Whole ? kLanes : width;  // elements of the last vector
    // The job's fields that every position reads, as locals: read through `job`, GCC reloaded
    // several of them from memory for every row.
    const Reader reader = job.rows;
    const I* const ids = job.ids;
    const std::uint64_t num_rows = job.num_rows;
    const std::int64_t padding_idx = job.padding_idx;
    const std::size_t ahead = job.ahead;
    const CacheLevel prefetch_level = job.prefetch_level;
    const std::size_t row_bytes = reader.row_bytes();

    // Vector k holds columns col + k * kLanes + [0, kLanes); only `tail` of the last one are real.
    auto lanes_of = [tail](std::size_t k) { return k + 1 == Count ? tail : kLanes; };
    // A sum starts from negative zero, which adds to any value without changing its bits (-0 +
    // +0 is +0), so every entry of the bag is added and the sum is its rows added in position
    // order: one loop instead of a copy of the first entry and a loop over the others (bags of
    // 1..39 float32 rows: 4-11% faster; the pooled loop alone, Zen 3, 2 threads). Only a
    // signaling NaN comes out quiet, as from any addition.
    std::size_t count = before.count;
    [[maybe_unused]] T biases = before.biases;
    V acc[Count];
    FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) acc[k] = Max ? V{} : -V{};
    [[maybe_unused]] M at[Count] = {};  // max: chunk offset of each lane's maximum, -1 if it came before the chunk
    if (count != 0) {
        FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) {
            load_vector<Vec>(acc[k], rows.partial + col + k * kLanes, lanes_of(k));
        }
        if constexpr (Track) for (std::size_t k = 0; k < Count; ++k) fill_lanes<Vec>(at[k], -1);
    }
    // Positions before prefetch_end prefetch the row `ahead` positions on (none past `stop`).
    const std::size_t prefetch_end = prefetch && ahead != 0 && stop > ahead
                                         ? std::min(std::max(stop - ahead, begin), end)
                                         : begin;
    auto prefetch_ahead = [&](std::size_t i) __attribute__((always_inline)) {
        const auto next = static_cast<std::uint64_t>(ids[i + ahead]);
        if (next < num_rows) {
            prefetch_row(reader.row_address(static_cast<std::size_t>(next)), row_bytes, prefetch_level);
        }
    };
    // An entry to pool: in range (else bad_id is set; the caller discards the result), and not
    // padding. The range comes first: kNoPadding is -1, a bad id.
    auto pooled = [&](std::int64_t id) __attribute__((always_inline)) {
        if (static_cast<std::uint64_t>(id) >= num_rows) {
            bad_id = true;
            return false;
        }
        return id != padding_idx;
    };
    // Loads the block of row `id` (weighted by position i's weight) one vector at a time and
    // hands each to combine(k, vector) at once: only the accumulator and a vector or two are
    // live, so the accumulator stays in registers even where a reader holds constants in some
    // (loading all of a row's vectors first spilled it to the stack on every row).
    auto each_vector = [&](std::size_t i, std::int64_t id, auto&& combine) __attribute__((always_inline)) {
        const auto row = reader.template row_at<kIsa>(static_cast<std::size_t>(id), col);
        FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) {
            // (The min tells the compiler that a reader's groups of lanes beyond kLanes never run.)
            const std::size_t n = std::min(lanes_of(k), kLanes);
            T lanes[kLanes];
            for (std::size_t j = n; j < kLanes; ++j) lanes[j] = T(0);
            reader.template load<kIsa>(row, k * kLanes, n, lanes);
            V vector;
            std::memcpy(&vector, lanes, sizeof lanes);
            if constexpr (Weighted) vector = job.per_sample_weights[i] * vector;
            combine(k, vector);
        }
    };
    std::size_t i = begin;
    // A maximum has no neutral start: the bag's first entry (padding skipped) is copied...
    if constexpr (Max) {
        for (; count == 0 && i < end; ++i) {
            if (i < prefetch_end) prefetch_ahead(i);
            const auto id = static_cast<std::int64_t>(ids[i]);
            if (!pooled(id)) continue;
            each_vector(i, id, [&](std::size_t k, const V& vector) __attribute__((always_inline)) {
                acc[k] = vector;
                if constexpr (Track) fill_lanes<Vec>(at[k], static_cast<std::int64_t>(i - begin));
            });
            count = 1;
        }
    }
    // ...and each later one (every entry of a sum) combined into the accumulator: first the
    // positions that prefetch, then the rest. (A test per position in one loop cost 13% where
    // rows are cached: 1M ids of one float32 row, D=64, 2 threads, Zen 3, 3.8 -> 3.3 ms; Zipf ids
    // over 1M rows 3%.)
    auto combine = [&](std::size_t i) __attribute__((always_inline)) {
        const auto id = static_cast<std::int64_t>(ids[i]);
        if (!pooled(id)) return;
        if constexpr (Max) {
            // Strictly greater: the first position holding the maximum wins, as in PyTorch.
            [[maybe_unused]] M offset{};
            if constexpr (Track) fill_lanes<Vec>(offset, static_cast<std::int64_t>(i - begin));
            each_vector(i, id, [&](std::size_t k, const V& vector) __attribute__((always_inline)) {
                const M greater = vector > acc[k];
                blend(acc[k], greater, vector);
                if constexpr (Track) blend(at[k], greater, offset);
            });
        } else if constexpr (kFusedSum) {
            const auto row = reader.template row_at<kIsa>(static_cast<std::size_t>(id), col);
            T scale = row.scale;
            T bias = row.bias;
            if constexpr (Weighted) {
                const T weight = job.per_sample_weights[i];
                scale *= weight;
                bias *= weight;
            }
            biases += bias;
            FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) {
                T sums[kLanes];
                std::memcpy(sums, &acc[k], sizeof sums);
                reader.template add_codes_times<kIsa>(row, k * kLanes, std::min(lanes_of(k), kLanes), scale, sums);
                std::memcpy(&acc[k], sums, sizeof sums);
            }
        } else {
            each_vector(i, id, [&](std::size_t k, const V& vector) __attribute__((always_inline)) {
                acc[k] += vector;
            });
        }
        ++count;
    };
    for (; i < prefetch_end; ++i) {
        prefetch_ahead(i);
        combine(i);
    }
    for (; i < end; ++i) combine(i);
    if (count == 0 && !last) return {0, biases};
    if (count == 0) {
        FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) acc[k] = V{};
    } else if (last) {
        if constexpr (kFusedSum) {
            FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) acc[k] = acc[k] + biases;
        }
        if (job.mean && count > 1) {
            const T size = static_cast<T>(count);
            FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) acc[k] = acc[k] / size;
        }
    }
    FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) {
        if (last) {
            store_vector<Vec>(rows.out + col + k * kLanes, acc[k], lanes_of(k));
        } else {
            store_vector<Vec>(rows.partial + col + k * kLanes, acc[k], lanes_of(k));
        }
    }
    if constexpr (Track) {
        FASTEMBED_UNROLL for (std::size_t k = 0; k < Count; ++k) {
            typename Vec::lane_int offsets[kLanes];
            std::memcpy(offsets, &at[k], sizeof offsets);
            for (std::size_t j = 0; j < lanes_of(k); ++j) {
                std::int64_t& arg = rows.argmax[col + k * kLanes + j];
                if (count == 0) {
                    arg = -1;
                } else if (offsets[j] >= 0) {
                    arg = static_cast<std::int64_t>(begin) + offsets[j];
                }
            }
        }
    }
    return {count, biases};
}

// Pools columns [col, dim) of a chunk, where 0 < dim - col < 2 * Count vectors: one block of
// Count vectors if that many columns remain, then the rest in halving counts, then a last vector
// of fewer lanes.
template <bool Max, bool Weighted, bool Track, class Vec, std::size_t Count, class Reader,
          class I, class Out>
FASTEMBED_ALWAYS_INLINE Pooled<typename Reader::value_type> pool_remaining_columns(
    const BagJob<Reader, I, Out>& job, std::size_t begin, std::size_t end, std::size_t stop,
    std::size_t col, Pooled<typename Reader::value_type> before, bool last,
    const BagRows<typename Reader::value_type, Out>& rows, bool& bad_id) {
    constexpr std::size_t kWidth = Count * Vec::lanes;
    const std::size_t dim = job.rows.dim();
    auto result = before;  // (some block below always runs: col < dim)
    if (dim - col >= kWidth) {
        result = pool_block<Max, Weighted, Track, Vec, Count, true>(job, begin, end, stop, col == 0, col,
                                                              kWidth, before, last, rows, bad_id);
        col += kWidth;
    }
    if constexpr (Count == 1) {
        if (col < dim) {
            result = pool_block<Max, Weighted, Track, Vec, 1, false>(job, begin, end, stop, col == 0, col,
                                                               dim - col, before, last, rows, bad_id);
        }
    } else {
        if (col < dim) {
            result = pool_remaining_columns<Max, Weighted, Track, Vec, Count / 2>(
                job, begin, end, stop, col, before, last, rows, bad_id);
        }
    }
    return result;
}

// Pools bags [first_bag, last_bag) with accumulators of 8 vectors of VectorBytes (4 when max
// also tracks the positions of the maxima, which take as many registers again); Max, Weighted,
// Track (argmax wanted) and the widths are fixed at compile time so the inner loops carry no
// branches on them and the accumulators stay in registers. (Mean is sum's loop: its division,
// once per bag, is the only difference, so it is not worth a copy of the loop of its own.)
template <bool Max, bool Weighted, bool Track, std::size_t VectorBytes, Isa Set, class Reader,
          class I, class Out>
FASTEMBED_ALWAYS_INLINE void pool_bags(const BagJob<Reader, I, Out>& job, std::size_t first_bag,
                                       std::size_t last_bag) {
    using T = typename Reader::value_type;
    using Vec = Vector<T, VectorBytes, Set>;
    constexpr std::size_t kCount = Track ? 4 : 8;
    constexpr std::size_t kWidth = kCount * Vec::lanes;
    const std::size_t dim = job.rows.dim();
    const std::size_t stop = job.bags.end(last_bag - 1);
    // A narrower output keeps a bag's partial sums here between its chunks.
    std::vector<T> partial(std::is_same_v<Out, T> ? 0 : dim);
    // A streamed output (RowWriter: a quarter of the L3 or more) gets each row from here, whole,
    // once its bag is done, in non-temporal stores of whole lines, rather than from the blocks'
    // vector stores, which read each line of the output in before writing it. Sum bags of 1M
    // Zipf ids (bags of 1..39) over 1M x 64 float32 rows into an output 16 bytes past a line,
    // 2 threads, Zen 4: the kernel alone, both forms in one process, 1.05-1.12x faster in five
    // runs of 21 rounds (5.4 -> 4.8-5.3 ms); through Python 5.4-5.5 against 5.6-6.7 ms. 8-bit
    // rows: 0.95-1.05x, no change.
    std::vector<Out> staged(job.writer.streams() ? dim : 0);
    // Set by the loop on a bad id; the shared flag is written once, after it. (Storing to the
    // atomic in the loop made GCC give up keeping the accumulator in registers: a row's every
    // vector went through the stack and a memmove call, 6x slower.)
    bool bad_id = false;
    for (std::size_t bag = first_bag; bag < last_bag; ++bag) {
        Out* const out_row = job.out + bag * dim;
        BagRows<T, Out> rows{staged.empty() ? out_row : staged.data(), nullptr,
                             Track ? job.argmax + bag * dim : nullptr};
        if constexpr (std::is_same_v<Out, T>) {
            rows.partial = rows.out;
        } else {
            rows.partial = partial.data();
        }
        const std::size_t bag_end = job.bags.end(bag);
        Pooled<T> pooled{0, -T(0)};  // (-0: see pool_block's accumulator)
        std::size_t begin = job.bags.begin(bag);
        do {
            const std::size_t end = bag_end - begin > job.chunk_rows ? begin + job.chunk_rows : bag_end;
            const bool last = end == bag_end;
            const Pooled<T> before = pooled;
            // Whole blocks of kCount vectors, then the rest (fewer than kWidth columns).
            std::size_t col = 0;
            for (; dim - col >= kWidth; col += kWidth) {
                pooled = pool_block<Max, Weighted, Track, Vec, kCount, true>(
                    job, begin, end, stop, col == 0, col, kWidth, before, last, rows, bad_id);
            }
            if (col < dim) {
                pooled = pool_remaining_columns<Max, Weighted, Track, Vec, kCount / 2>(
                    job, begin, end, stop, col, before, last, rows, bad_id);
            }
            begin = end;
        } while (begin < bag_end);
        if (!staged.empty()) job.writer.copy(out_row, staged.data(), dim * sizeof(Out));
    }
    job.writer.finish();
    if (bad_id) job.bad_id->store(true, std::memory_order_relaxed);
}

// Pools bags [first_bag, last_bag) in the copy of the loop compiled for `isa`.
template <bool Max, bool Weighted, bool Track, class Reader, class I, class Out, Isa isa>
FASTEMBED_ALWAYS_INLINE void pool_bags_in(IsaTag<isa>, const BagJob<Reader, I, Out>& job, std::size_t first_bag,
                                          std::size_t last_bag) {
    // The accumulator takes 8 vector registers (half of SSE2's, NEON's or AVX2's 16, a quarter of
    // AVX-512's 32) of 16 bytes (SSE2, NEON), 32 (AVX2) or 64 (AVX-512).
    constexpr std::size_t kVectorBytes = isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16;
    pool_bags<Max, Weighted, Track, kVectorBytes, isa>(job, first_bag, last_bag);
}

}  // namespace detail

// BagJob::num_rows for ids that have already passed check_ids.
inline constexpr std::uint64_t kIdsChecked = ~std::uint64_t{0};

// The pooling alone, through a row reader (see the top of this file): out[b, :] = pooled rows of
// bag b, in the reader's value_type or rounded once to a narrower Out (float16 / bfloat16 bags
// of float sums). `per_sample_weights` (one per flat id, or null) only with sum. `argmax`
// (num_bags x dim, or null) receives, for max, the position of the id that gave each element,
// -1 for an empty bag. Ids must have passed check_ids, unless `check_ids`: then each id of a
// bag is compared with rows.num_rows() as it is pooled (dim > 0), and the result is false if
// one was out of range: out is then garbage, and ids in no bag were not looked at. (A separate
// check_ids pass took 2-9% of a bag's time; FBGEMM also compares in its loop.)
template <class Reader, class I, class Out>
bool pool_rows_with(const Reader& rows, const I* ids, const BagLayout& bags, BagMode mode,
                    const typename Reader::value_type* per_sample_weights, std::int64_t padding_idx,
                    Out* out, std::int64_t* argmax, bool check_ids = false) {
    const std::size_t dim = rows.dim();
    if (dim == 0) return true;
    std::atomic<bool> bad_id{false};
    const std::size_t row_bytes = rows.row_bytes();
    const std::size_t chunk_rows = std::max<std::size_t>(pooling_chunk_bytes() / row_bytes, 8);
    const detail::BagJob<Reader, I, Out> job{rows,
                                             ids,
                                             bags,
                                             per_sample_weights,
                                             padding_idx,
                                             mode == BagMode::mean,
                                             out,
                                             argmax,
                                             prefetch_distance(row_bytes, bags.num_ids() * row_bytes,
                                                               rows.num_rows() * row_bytes),
                                             prefetch_plan().level_for(row_bytes),
                                             chunk_rows,
                                             RowWriter(bags.num_bags * dim * sizeof(Out), dim * sizeof(Out)),
                                             check_ids ? rows.num_rows() : kIdsChecked,
                                             &bad_id};
    parallel_bags(bags, row_bytes + sizeof(I), [&](std::size_t first, std::size_t last) {
        auto pool = [&](auto max_tag, auto weighted_tag, auto track_tag) {
            on_this_cpu<Isa::avx512>([&](auto isa) FASTEMBED_INLINE_LAMBDA {
                detail::pool_bags_in<decltype(max_tag)::value, decltype(weighted_tag)::value,
                                     decltype(track_tag)::value>(isa, job, first, last);
            });
        };
        using Yes = std::true_type;
        using No = std::false_type;
        if (mode == BagMode::max) {
            if (argmax != nullptr) {
                pool(Yes{}, No{}, Yes{});
            } else {
                pool(Yes{}, No{}, No{});
            }
        } else if (per_sample_weights != nullptr) {
            pool(No{}, Yes{}, No{});
        } else {
            pool(No{}, No{}, No{});  // sum or mean
        }
    });
    return !bad_id.load(std::memory_order_relaxed);
}

// The pooling of a plain float or double table of num_embeddings rows (ids checked).
template <class T, class I>
void pool_rows(const T* weight, std::size_t num_embeddings, std::size_t dim, const I* ids,
               const BagLayout& bags, BagMode mode, const T* per_sample_weights,
               std::int64_t padding_idx, T* out, std::int64_t* argmax) {
    pool_rows_with(PlainRows<T>(weight, num_embeddings, dim), ids, bags, mode, per_sample_weights,
                   padding_idx, out, argmax);
}

// The forward of a pooled lookup: range check, then pool_rows.
template <class T, class I>
void embedding_bag_forward(const T* weight, std::size_t num_embeddings, std::size_t dim,
                           const I* ids, std::size_t n, const BagLayout& bags, BagMode mode,
                           const T* per_sample_weights, std::int64_t padding_idx, T* out,
                           std::int64_t* argmax) {
    check_ids(ids, n, num_embeddings);
    pool_rows(weight, num_embeddings, dim, ids, bags, mode, per_sample_weights, padding_idx, out, argmax);
}

// Gradient w.r.t. per_sample_weights of a weighted sum: out[i] = <grad_output[bag of i],
// weight[ids[i]]>, 0 for padding entries and for ids in no bag. Read the table before any
// optimizer updates it.
// The table (W) and grad_output (S: T or W) may be stored in less precision than the gradient is
// computed in (T).
template <class S, class W, class I, class T = accumulator_t<W>>
void bag_per_sample_weights_grad(const S* grad_output, const W* weight, std::size_t num_embeddings,
                                 std::size_t dim, const I* ids, std::size_t n,
                                 const BagLayout& bags, std::int64_t padding_idx, T* out) {
    check_ids(ids, n, num_embeddings);
    std::fill(out, out + n, T(0));
    const std::size_t ahead = prefetch_distance(dim * sizeof(W), bags.num_ids() * dim * sizeof(W));
    parallel_bags(bags, dim * sizeof(W) + sizeof(I) + sizeof(T), [&](std::size_t first, std::size_t last) {
        const std::size_t stop = bags.end(last - 1);
        for (std::size_t bag = first; bag < last; ++bag) {
            const S* __restrict g = grad_output + bag * dim;
            for (std::size_t i = bags.begin(bag); i < bags.end(bag); ++i) {
                if (i + ahead < stop) {
                    prefetch_row(weight + static_cast<std::size_t>(ids[i + ahead]) * dim, dim * sizeof(W));
                }
                if (static_cast<std::int64_t>(ids[i]) == padding_idx) continue;
                const W* __restrict row = weight + static_cast<std::size_t>(ids[i]) * dim;
                T dot = 0;
                for (std::size_t d = 0; d < dim; ++d) dot += Element<S>::widen(g[d]) * Element<W>::widen(row[d]);
                out[i] = dot;
            }
        }
    });
}

}  // namespace fastembed
