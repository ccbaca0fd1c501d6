// How far ahead loops over scattered rows prefetch, and into which cache: the one speed choice
// of the row loops that follows a measurement of the host instead of its reported cache sizes.
// No result depends on it.
//
// Why measured: two hosts of the same machine kind want different plans. Sum bags of 1M uniform
// ids over a 1M x 64 float32 table (256-byte rows), 2 threads, median ms:
//   2-core Xeon: the L2, 64 rows ahead, 14.2; the L1, 64 ahead, 20.4 (an L1 prefetch holds one
//     of the L1's 10 to 16 fill buffers until its line comes from DRAM: about three 256-byte
//     rows in flight; the backward of the same shape 42.9 -> 33.8 ms). At one thread 64 rows
//     ahead pooled 1.6x faster than 16 (D=16 rows 1.8x); gathers of D=16 rows from a 64 MB
//     table 2x; the backward of D=16 rows 1.2x; for D=256 the distance did not matter.
//   2-core EPYC (Zen 3): the L1, 32 ahead, 15.9; the L2, 16 ahead, 16.0; the L1, 16 ahead,
//     16.3; the L2, 64 ahead, 17.7 (Zipf ids: 4.4 against 4.7; 8-bit rows: 8.1 against 8.7).
// Cache sizes predict neither: both have a 32 KiB L1d. Rows of 128 bytes or less (float16 and
// 8-bit rows of D=64, float32 rows of D=32 or less) want a level of their own:
//   2-core Xeon: the L1 (8-bit rows of Zipf ids, whose frequent rows sit in the L2 already,
//     pooled 12% slower sent to the L2).
//   2-core EPYC (Zen 4, AVX-512, 1 MiB L2): the L2, by 2x, where its 256-byte rows gain 20%.
//     Bags of 1M uniform ids, float16 rows: 9.5-12 ms into the L1, 4.8-4.9 into the L2; 8-bit
//     rows 11.2-12.6 against 4.5-5.1. Zipf ids: float16 6.5 against 2.9-3.4, 8-bit 6.0
//     against 3.5-3.7. (The pooled loop alone, the two builds alternated, 2 threads.)
//
// Chosen once per process, in this order:
//   1. FASTEMBED_PREFETCH="l2:32:l1": the cache rows of more than 128 bytes go to (l1 or l2),
//      the most rows ahead (1 to 256), counted in 256-byte rows (narrower rows go as many bytes
//      ahead: PrefetchPlan::distance), and, optionally, the cache rows of 128 bytes or less go
//      to (the L1 where left out: "l2:32" is "l2:32:l1"). Any other value is ignored.
//   2. A calibration, the first time a kernel reads more bytes of scattered rows than the L3
//      holds (the reads prefetching is for), on a buffer four times the L3, on every thread,
//      candidates interleaved over rounds, the fastest median winning: first each level and
//      distance summing random 256-byte rows, then, at the distance chosen, each level for
//      128-byte rows. About 50 ms, once (up to 0.5 s where the system is slow to hand out the
//      buffer's huge pages).
//   3. Until then, or where the calibration fails (its buffer cannot be had, say): the L2 and
//      64 rows, narrow rows into the L1.
// No caller waits for another's calibration, so a process forked during one never blocks: it
// keeps the default.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/host_caches.hpp"

namespace fastembed {

// Where a prefetch puts its line: the L1 (prefetcht0), or the L2 only (prefetcht1; AMD's cores
// fill the L1 all the same).
enum class CacheLevel { l1, l2 };

struct PrefetchPlan {
    CacheLevel wide_rows = CacheLevel::l2;  // rows of more than kNarrowRowBytes
    std::size_t max_rows_ahead = 64;
    CacheLevel narrow_rows = CacheLevel::l1;  // rows of kNarrowRowBytes or less

    // Hosts disagree on the narrow rows' level, and not as they do on the wide rows' (see the
    // top of this file).
    static constexpr std::size_t kNarrowRowBytes = 128;

    CacheLevel level_for(std::size_t row_bytes) const {
        return row_bytes > kNarrowRowBytes ? wide_rows : narrow_rows;
    }

    // The rows max_rows_ahead counts: the calibration's (D=64 float32).
    static constexpr std::size_t kReferenceRowBytes = 256;

    // Rows ahead for rows of `row_bytes`: as many bytes ahead as max_rows_ahead rows of
    // kReferenceRowBytes, so that narrower rows go more rows ahead (wider ones keep
    // max_rows_ahead rows), but no more rows than fit in `window_bytes` (half the L1d:
    // prefetch_bytes()), or than 16 where fewer fit. The rows in flight must cover a
    // DRAM round trip at the rate a thread consumes rows, without evicting each other from the
    // L1; a narrower row takes less time, so covering the same time takes more of them. On the
    // Zen 3 VM (plan l1:16), bags of 1M Zipf ids pooled from float16 rows (128 bytes) took
    // 5.1-5.3 ms 16 rows ahead and 4.1-4.5 ms 32 to 64 ahead; from 8-bit rows (72 bytes),
    // 7.1-7.5 ms and 5.8-6.4 ms 32 to 56 ahead (the kernel alone, interleaved, 2 threads).
    std::size_t distance(std::size_t row_bytes, std::size_t window_bytes = prefetch_bytes()) const {
        const std::size_t bytes = row_bytes == 0 ? 1 : row_bytes;
        const std::size_t reach = std::max(max_rows_ahead, max_rows_ahead * kReferenceRowBytes / bytes);
        return std::min<std::size_t>(std::max<std::size_t>(window_bytes / bytes, 16), reach);
    }

    bool operator==(const PrefetchPlan& other) const {
        return wide_rows == other.wide_rows && max_rows_ahead == other.max_rows_ahead &&
               narrow_rows == other.narrow_rows;
    }
};

// "l1" or "l2".
std::string to_string(CacheLevel level);

// "l1:32:l1", "l2:64:l2": the wide rows' level, the rows ahead, the narrow rows' level.
std::string to_string(const PrefetchPlan& plan);

// FASTEMBED_PREFETCH's syntax; nothing for anything else.
std::optional<PrefetchPlan> parse_prefetch_plan(const char* text);

// The wide rows' levels and distances a calibration chooses between (each with the default's
// narrow rows' level), before it chooses the narrow rows' level.
const std::vector<PrefetchPlan>& prefetch_candidates();

namespace detail {
// A plan in one word (rows ahead in the low bits, a bit for each level that is the L2), so that
// every row loop can read the plan in force with a plain load while a calibration on another
// thread replaces it.
inline constexpr std::uint32_t kRowsAheadMask = 0xFFFFu;
inline constexpr std::uint32_t kWideRowsInL2 = 1u << 16;
inline constexpr std::uint32_t kNarrowRowsInL2 = 1u << 17;

constexpr std::uint32_t pack(const PrefetchPlan& plan) {
    return (plan.wide_rows == CacheLevel::l2 ? kWideRowsInL2 : 0u) |
           (plan.narrow_rows == CacheLevel::l2 ? kNarrowRowsInL2 : 0u) |
           static_cast<std::uint32_t>(plan.max_rows_ahead);
}

constexpr PrefetchPlan unpack(std::uint32_t packed) {
    return {(packed & kWideRowsInL2) != 0 ? CacheLevel::l2 : CacheLevel::l1, packed & kRowsAheadMask,
            (packed & kNarrowRowsInL2) != 0 ? CacheLevel::l2 : CacheLevel::l1};
}

// The plan in force; the default until one is chosen.
inline std::atomic<std::uint32_t> current_prefetch_plan{pack(PrefetchPlan{})};
}  // namespace detail

// The plan in force.
inline PrefetchPlan prefetch_plan() {
    return detail::unpack(detail::current_prefetch_plan.load(std::memory_order_relaxed));
}

// Reads FASTEMBED_PREFETCH on the first call, and calibrates the first time `bytes_read`
// (the scattered row bytes a loop is about to read) exceeds the L3, unless the variable set the
// plan. Cheap after that.
void plan_prefetch_for(std::size_t bytes_read);

// What was chosen and how, for fastembed.host_info().
struct PrefetchReport {
    PrefetchPlan plan;
    // "env", "calibrated", "default" (not calibrated yet), "calibrating" (on another thread,
    // now) or "fallback" (the calibration failed: its buffer could not be had, say)
    std::string source;
    std::size_t probe_bytes = 0;                  // the calibration's buffer (0: none ran)
    double calibration_ms = 0;                    // its whole time, the buffer included
    std::vector<std::pair<PrefetchPlan, double>> probe_ms;  // each candidate's median
    std::vector<std::pair<CacheLevel, double>> narrow_probe_ms;  // each narrow rows' level's
};
PrefetchReport prefetch_report();

// One calibration over a buffer of `probe_bytes` on up to `threads` threads (0: all), reading
// `rows_per_trial` rows per candidate per round for `rounds` rounds: the report of what it
// would choose, the plan in force left alone. Tests call it with small sizes. Throws
// std::invalid_argument for probe_bytes under one row or no rows or rounds, std::bad_alloc.
PrefetchReport calibrate_prefetch(std::size_t probe_bytes, std::size_t rows_per_trial,
                                  std::size_t rounds, std::size_t threads);

}  // namespace fastembed
