#include "kernels/prefetch_plan.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "kernels/recycled_buffers.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

namespace {

// The probe's rows: D=64 float32, the common case, and wide enough for the level to matter;
// then the widest narrow rows (float16 or 8-bit rows of D=64 are 128 and 72 bytes).
constexpr std::size_t kProbeRowBytes = PrefetchPlan::kReferenceRowBytes;
constexpr std::size_t kNarrowProbeRowBytes = PrefetchPlan::kNarrowRowBytes;

// The probe's buffer is this many times the L3, so that few of its rows are cached, within
// these bounds (the L3 a VM reports can be far off: see host_caches.hpp).
constexpr std::size_t kProbeL3Multiple = 4;
constexpr std::size_t kMinProbeBytes = std::size_t{64} << 20;
constexpr std::size_t kMaxProbeBytes = std::size_t{256} << 20;
constexpr std::size_t kProbeRowsPerTrial = 1 << 15;
constexpr std::size_t kProbeRounds = 5;

// 0: nobody has looked at the environment; 1: the plan is the default or FASTEMBED_PREFETCH's,
// and a calibration may still run; 2: a calibration is running or done, or the variable set
// the plan.
std::atomic<int> g_state{0};
// Written once (state 2 is reached once), then read without a lock: no mutex a fork could
// leave held.
PrefetchReport g_report;
std::atomic<bool> g_report_published{false};

void publish(const PrefetchReport& report) {
    g_report = report;
    g_report_published.store(true, std::memory_order_release);
    detail::current_prefetch_plan.store(detail::pack(report.plan), std::memory_order_relaxed);
}

// A random row of `rows` for each of `count` slots (xorshift64 from `state`, which it advances:
// the same draws everywhere).
std::vector<std::uint32_t> random_rows(std::size_t rows, std::size_t count, std::uint64_t& state) {
    std::vector<std::uint32_t> result(count);
    for (std::uint32_t& row : result) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        row = static_cast<std::uint32_t>(state % rows);
    }
    return result;
}

// Sums the rows `rows[begin, end)` of `table` (float32 rows of RowBytes) as a pooled bag does,
// prefetching under `plan`.
template <std::size_t RowBytes>
float sum_rows(const float* table, const std::uint32_t* rows, std::size_t begin, std::size_t end,
               const PrefetchPlan& plan) {
    constexpr std::size_t kDim = RowBytes / sizeof(float);
    const std::size_t ahead = plan.distance(RowBytes);
    const CacheLevel level = plan.level_for(RowBytes);
    float sum[kDim] = {};
    for (std::size_t i = begin; i < end; ++i) {
        if (i + ahead < end) prefetch_row(table + std::size_t{rows[i + ahead]} * kDim, RowBytes, level);
        const float* row = table + std::size_t{rows[i]} * kDim;
        for (std::size_t d = 0; d < kDim; ++d) sum[d] += row[d];
    }
    float total = 0;
    for (float value : sum) total += value;
    return total;
}

// "l1" or "l2" at text, the rest after it in `rest`; nothing for anything else.
std::optional<CacheLevel> parse_level(const char* text, const char** rest) {
    if (std::strncmp(text, "l1", 2) != 0 && std::strncmp(text, "l2", 2) != 0) return std::nullopt;
    *rest = text + 2;
    return text[1] == '2' ? CacheLevel::l2 : CacheLevel::l1;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string to_string(CacheLevel level) { return level == CacheLevel::l2 ? "l2" : "l1"; }

std::string to_string(const PrefetchPlan& plan) {
    return to_string(plan.wide_rows) + ":" + std::to_string(plan.max_rows_ahead) + ":" +
           to_string(plan.narrow_rows);
}

std::optional<PrefetchPlan> parse_prefetch_plan(const char* text) {
    if (text == nullptr) return std::nullopt;
    PrefetchPlan plan;
    const char* digits = nullptr;
    const std::optional<CacheLevel> wide = parse_level(text, &digits);
    if (!wide || *digits++ != ':' || *digits < '0' || *digits > '9') return std::nullopt;
    plan.wide_rows = *wide;
    char* end = nullptr;
    const unsigned long long rows = std::strtoull(digits, &end, 10);
    if (rows < 1 || rows > 256) return std::nullopt;
    plan.max_rows_ahead = static_cast<std::size_t>(rows);
    if (*end == ':') {
        const char* rest = nullptr;
        const std::optional<CacheLevel> narrow = parse_level(end + 1, &rest);
        if (!narrow || *rest != '\0') return std::nullopt;
        plan.narrow_rows = *narrow;
    } else if (*end != '\0') {
        return std::nullopt;
    }
    return plan;
}

const std::vector<PrefetchPlan>& prefetch_candidates() {
    static const std::vector<PrefetchPlan> candidates = {
        {CacheLevel::l1, 16}, {CacheLevel::l1, 32}, {CacheLevel::l1, 64},
        {CacheLevel::l2, 16}, {CacheLevel::l2, 32}, {CacheLevel::l2, 64}};
    return candidates;
}

PrefetchReport calibrate_prefetch(std::size_t probe_bytes, std::size_t rows_per_trial,
                                  std::size_t rounds, std::size_t threads) {
    if (probe_bytes < kProbeRowBytes || rows_per_trial == 0 || rounds == 0) {
        throw std::invalid_argument("a prefetch calibration needs probe_bytes >= " +
                                    std::to_string(kProbeRowBytes) +
                                    " and rows_per_trial, rounds >= 1; got " + std::to_string(probe_bytes) +
                                    ", " + std::to_string(rows_per_trial) + ", " + std::to_string(rounds));
    }
    const auto start = std::chrono::steady_clock::now();
    struct Probe {  // freed whatever happens: no result is likely to want this size
        Buffer buffer;
        ~Probe() { free_buffer(buffer); }
    } probe{take_buffer(probe_bytes)};
    // Every page written: untouched pages all read as the one shared zero page, always cached.
    std::memset(probe.buffer.data, 0, probe_bytes);
    const auto* table = static_cast<const float*>(probe.buffer.data);
    if (threads == 0) threads = get_num_threads();
    std::vector<float> sums(threads);
    std::vector<double> thread_ms(threads);
    std::uint64_t draws = 0x9E3779B97F4A7C15ull;
    // The median time of each of `plans` summing rows of kRowBytes (row_bytes_tag: an
    // integral_constant), over `rounds` rounds after a warm-up trial, in a rotating order (no
    // plan always runs first after a pause). Each trial reads rows of its own: rows read again
    // would come from the cache.
    auto medians = [&](auto row_bytes_tag, const std::vector<PrefetchPlan>& plans) {
        constexpr std::size_t kRowBytes = decltype(row_bytes_tag)::value;
        const std::vector<std::uint32_t> rows =
            random_rows(std::max<std::size_t>(probe_bytes / kRowBytes, 1),
                        (1 + rounds * plans.size()) * rows_per_trial, draws);
        std::size_t trials_run = 0;
        // A trial's time: the mean of its threads' loops, each timed by its thread, so that
        // waking the pool's threads (up to half a millisecond on a VM) is not counted.
        auto trial = [&](const PrefetchPlan& plan) {
            const std::uint32_t* trial_rows = rows.data() + rows_per_trial * trials_run++;
            run_tasks(threads, [&](std::size_t t) {
                const auto thread_start = std::chrono::steady_clock::now();
                sums[t] = sum_rows<kRowBytes>(table, trial_rows, rows_per_trial * t / threads,
                                              rows_per_trial * (t + 1) / threads, plan);
                thread_ms[t] = milliseconds_since(thread_start);
            }, threads);
            double total = 0;
            for (double ms : thread_ms) total += ms;
            return total / static_cast<double>(threads);
        };
        trial(plans[0]);  // warms the ids, the threads and the TLB
        std::vector<std::vector<double>> times(plans.size());
        for (std::size_t round = 0; round < rounds; ++round) {
            for (std::size_t k = 0; k < plans.size(); ++k) {
                const std::size_t p = (k + round) % plans.size();
                times[p].push_back(trial(plans[p]));
            }
        }
        std::vector<double> result;
        for (const std::vector<double>& plan_times : times) result.push_back(median(plan_times));
        return result;
    };

    PrefetchReport report;
    report.source = "calibrated";
    report.probe_bytes = probe_bytes;
    // First the wide rows' level and distance...
    const std::vector<PrefetchPlan>& candidates = prefetch_candidates();
    const std::vector<double> wide_ms =
        medians(std::integral_constant<std::size_t, kProbeRowBytes>{}, candidates);
    for (std::size_t c = 0; c < candidates.size(); ++c) report.probe_ms.emplace_back(candidates[c], wide_ms[c]);
    const auto fastest = std::min_element(wide_ms.begin(), wide_ms.end()) - wide_ms.begin();
    report.plan = candidates[static_cast<std::size_t>(fastest)];
    // ...then, at that distance, the narrow rows' level (the L1 on a tie, the default's).
    std::vector<PrefetchPlan> narrow(2, report.plan);
    narrow[0].narrow_rows = CacheLevel::l1;
    narrow[1].narrow_rows = CacheLevel::l2;
    const std::vector<double> narrow_ms =
        medians(std::integral_constant<std::size_t, kNarrowProbeRowBytes>{}, narrow);
    report.narrow_probe_ms = {{CacheLevel::l1, narrow_ms[0]}, {CacheLevel::l2, narrow_ms[1]}};
    report.plan.narrow_rows = narrow_ms[1] < narrow_ms[0] ? CacheLevel::l2 : CacheLevel::l1;
    report.calibration_ms = milliseconds_since(start);
    return report;
}

void plan_prefetch_for(std::size_t bytes_read) {
    int state = g_state.load(std::memory_order_acquire);
    if (state == 0) {
        const std::optional<PrefetchPlan> plan = parse_prefetch_plan(std::getenv("FASTEMBED_PREFETCH"));
        int expected = 0;
        if (plan) {
            if (g_state.compare_exchange_strong(expected, 2)) publish({*plan, "env", 0, 0, {}, {}});
            return;
        }
        g_state.compare_exchange_strong(expected, 1);
        state = 1;
    }
    if (state != 1 || bytes_read <= host_caches().used.l3) return;
    int expected = 1;
    if (!g_state.compare_exchange_strong(expected, 2)) return;
    const std::size_t probe_bytes =
        std::clamp(kProbeL3Multiple * host_caches().used.l3, kMinProbeBytes, kMaxProbeBytes);
    try {
        publish(calibrate_prefetch(probe_bytes, kProbeRowsPerTrial, kProbeRounds, 0));
    } catch (...) {
        // Whatever stops the probe (its buffer, a thread it could not start), the call that
        // triggered it goes on with the default plan.
        publish({PrefetchPlan{}, "fallback", 0, 0, {}, {}});
    }
}

PrefetchReport prefetch_report() {
    plan_prefetch_for(0);  // reads the environment if no kernel has yet
    if (g_report_published.load(std::memory_order_acquire)) return g_report;
    PrefetchReport report;
    report.source = g_state.load(std::memory_order_acquire) == 2 ? "calibrating" : "default";
    return report;
}

}  // namespace fastembed
