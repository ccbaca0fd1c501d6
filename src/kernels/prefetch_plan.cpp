#include "kernels/prefetch_plan.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kernels/recycled_buffers.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

namespace {

// The probe's rows: D=64 float32, the common case, and wide enough for the level to matter.
constexpr std::size_t kProbeDim = PrefetchPlan::kReferenceRowBytes / sizeof(float);
constexpr std::size_t kProbeRowBytes = PrefetchPlan::kReferenceRowBytes;

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

// A random row of `rows` for each of `count` slots (xorshift64: the same draws everywhere).
std::vector<std::uint32_t> random_rows(std::size_t rows, std::size_t count) {
    std::vector<std::uint32_t> result(count);
    std::uint64_t state = 0x9E3779B97F4A7C15ull;
    for (std::uint32_t& row : result) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        row = static_cast<std::uint32_t>(state % rows);
    }
    return result;
}

// Sums the rows `rows[begin, end)` of `table` as a pooled bag does, prefetching under `plan`.
float sum_rows(const float* table, const std::uint32_t* rows, std::size_t begin, std::size_t end,
               const PrefetchPlan& plan) {
    const std::size_t ahead = plan.distance(kProbeRowBytes);
    const CacheLevel level = plan.level_for(kProbeRowBytes);
    float sum[kProbeDim] = {};
    for (std::size_t i = begin; i < end; ++i) {
        if (i + ahead < end) prefetch_row(table + std::size_t{rows[i + ahead]} * kProbeDim, kProbeRowBytes, level);
        const float* row = table + std::size_t{rows[i]} * kProbeDim;
        for (std::size_t d = 0; d < kProbeDim; ++d) sum[d] += row[d];
    }
    float total = 0;
    for (float value : sum) total += value;
    return total;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string to_string(const PrefetchPlan& plan) {
    return std::string(plan.wide_rows == CacheLevel::l2 ? "l2:" : "l1:") +
           std::to_string(plan.max_rows_ahead);
}

std::optional<PrefetchPlan> parse_prefetch_plan(const char* text) {
    if (text == nullptr) return std::nullopt;
    PrefetchPlan plan;
    if (std::strncmp(text, "l1:", 3) == 0) {
        plan.wide_rows = CacheLevel::l1;
    } else if (std::strncmp(text, "l2:", 3) == 0) {
        plan.wide_rows = CacheLevel::l2;
    } else {
        return std::nullopt;
    }
    const char* digits = text + 3;
    if (*digits < '0' || *digits > '9') return std::nullopt;
    char* end = nullptr;
    const unsigned long long rows = std::strtoull(digits, &end, 10);
    if (*end != '\0' || rows < 1 || rows > 256) return std::nullopt;
    plan.max_rows_ahead = static_cast<std::size_t>(rows);
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
    const std::vector<PrefetchPlan>& candidates = prefetch_candidates();
    // Each trial reads rows of its own: rows read again would come from the cache.
    const std::size_t trials = 1 + rounds * candidates.size();
    const std::vector<std::uint32_t> rows =
        random_rows(std::max<std::size_t>(probe_bytes / kProbeRowBytes, 1), trials * rows_per_trial);
    std::vector<std::vector<double>> times(candidates.size());
    if (threads == 0) threads = get_num_threads();
    std::vector<float> sums(threads);
    std::vector<double> thread_ms(threads);
    std::size_t trials_run = 0;
    // A trial's time: the mean of its threads' loops, each timed by its thread, so that waking
    // the pool's threads (up to half a millisecond on a VM) is not counted.
    auto trial = [&](const PrefetchPlan& plan) {
        const std::uint32_t* trial_rows = rows.data() + rows_per_trial * trials_run++;
        run_tasks(threads, [&](std::size_t t) {
            const auto thread_start = std::chrono::steady_clock::now();
            sums[t] = sum_rows(table, trial_rows, rows_per_trial * t / threads,
                               rows_per_trial * (t + 1) / threads, plan);
            thread_ms[t] = milliseconds_since(thread_start);
        }, threads);
        double total = 0;
        for (double ms : thread_ms) total += ms;
        return total / static_cast<double>(threads);
    };
    trial(candidates[0]);  // warms the ids, the threads and the TLB
    for (std::size_t round = 0; round < rounds; ++round) {
        // A rotating order: no candidate always runs first after a pause.
        for (std::size_t k = 0; k < candidates.size(); ++k) {
            const std::size_t c = (k + round) % candidates.size();
            times[c].push_back(trial(candidates[c]));
        }
    }

    PrefetchReport report;
    report.source = "calibrated";
    report.probe_bytes = probe_bytes;
    double best = 0;
    for (std::size_t c = 0; c < candidates.size(); ++c) {
        const double ms = median(times[c]);
        report.probe_ms.emplace_back(candidates[c], ms);
        if (c == 0 || ms < best) {
            best = ms;
            report.plan = candidates[c];
        }
    }
    report.calibration_ms = milliseconds_since(start);
    return report;
}

void plan_prefetch_for(std::size_t bytes_read) {
    int state = g_state.load(std::memory_order_acquire);
    if (state == 0) {
        const std::optional<PrefetchPlan> plan = parse_prefetch_plan(std::getenv("FASTEMBED_PREFETCH"));
        int expected = 0;
        if (plan) {
            if (g_state.compare_exchange_strong(expected, 2)) publish({*plan, "env", 0, 0, {}});
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
        publish({PrefetchPlan{}, "fallback", 0, 0, {}});
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
