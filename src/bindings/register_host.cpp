#include <pybind11/pybind11.h>

#include "bindings/register.hpp"
#include "kernels/bag.hpp"
#include "kernels/blocked_reduce.hpp"
#include "kernels/gather.hpp"
#include "kernels/host_caches.hpp"
#include "kernels/lanes.hpp"
#include "kernels/prefetch_plan.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed::bindings {

namespace py = pybind11;

namespace {

py::dict sizes_dict(const CacheSizes& sizes) {
    py::dict result;
    result["l1d_bytes"] = sizes.l1d;
    result["l2_bytes"] = sizes.l2;
    result["l3_bytes"] = sizes.l3;
    return result;
}

py::dict prefetch_dict(const PrefetchReport& report) {
    py::dict result;
    result["plan"] = to_string(report.plan);
    result["source"] = report.source;
    result["probe_bytes"] = report.probe_bytes;
    result["calibration_ms"] = report.calibration_ms;
    py::dict probe_ms;
    for (const auto& [plan, ms] : report.probe_ms) probe_ms[py::str(to_string(plan))] = ms;
    result["probe_ms"] = probe_ms;
    py::dict narrow_probe_ms;
    for (const auto& [level, ms] : report.narrow_probe_ms) narrow_probe_ms[py::str(to_string(level))] = ms;
    result["narrow_probe_ms"] = narrow_probe_ms;
    return result;
}

}  // namespace

void register_host(py::module_& m) {
    m.def("host_info", [] {
        const HostCaches& caches = host_caches();
        py::dict info = sizes_dict(caches.used);
        info["source"] = caches.source;
        info["sysfs"] = sizes_dict(caches.sysfs);
        info["cpuid"] = sizes_dict(caches.cpuid);
        info["available_cores"] = available_cores();
        // The widest copy of the instruction-bound kernels that runs (lanes.hpp: on_this_cpu;
        // only the pooled loop has an AVX-512 copy).
        info["isa"] = on_this_cpu<Isa::avx512>([](auto isa) {
            constexpr Isa kIsa = decltype(isa)::value;
            return kIsa == Isa::avx512 ? "avx512" : kIsa == Isa::avx2 ? "avx2" : "baseline";
        });
        // What the kernels derive from them (speed only)...
        info["prefetch_bytes"] = prefetch_bytes();
        info["unprefetched_table_bytes"] = unprefetched_table_bytes();
        info["prefetch"] = prefetch_dict(prefetch_report());
        info["pooling_chunk_bytes"] = pooling_chunk_bytes();
        info["streaming_bytes"] = streaming_bytes();
        info["in_order_table_bytes"] = in_order_table_bytes();
        // ...and the shape-only budgets that fix summation orders (the same on every host).
        info["block_sums_budget_bytes"] = kBlockSumsBudgetBytes;
        info["block_sums_per_block_bytes"] = kCacheResidentBytes;
        return info;
    });
    // A calibration run now, its plan not put in force: what the first large read would choose.
    m.def(
        "calibrate_prefetch",
        [](std::size_t probe_bytes, std::size_t rows_per_trial, std::size_t rounds) {
            PrefetchReport report;
            {
                py::gil_scoped_release release;
                report = calibrate_prefetch(probe_bytes, rows_per_trial, rounds, 0);
            }
            return prefetch_dict(report);
        },
        py::arg("probe_bytes"), py::arg("rows_per_trial"), py::arg("rounds"));
}

}  // namespace fastembed::bindings
