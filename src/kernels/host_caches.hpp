// The host's cache sizes, for the choices that never change a result bit: how far ahead rows
// are prefetched, how many positions a bag chunk spans, when outputs bypass the cache, when a
// gather reads in id order. Choices that change the summation order (blocked_reduce.hpp,
// runs.hpp) never read these: they depend on the shape alone.
//
// Read once per process on first use, in this order of precedence:
//   1. FASTEMBED_L1D_BYTES, FASTEMBED_L2_BYTES, FASTEMBED_L3_BYTES (a positive byte count; any
//      other value is ignored);
//   2. the smaller of Linux sysfs (/sys/devices/system/cpu/cpu0/cache) and CPUID (x86 leaf 4 or
//      0x8000001D), where both answer: a VM's CPUID can claim the host's whole L3 (64 MiB on a
//      2-core EPYC guest whose sysfs says 8 MiB);
//   3. fallbacks small enough for any current core (32 KiB L1d, 512 KiB L2, 4 MiB L3).
// The L3 is then capped at kMaxL3BytesPerCore per core this process may use: a VM sees the
// whole socket's L3 (480 MiB on the 2-core development VM, in sysfs and CPUID alike) but
// shares it with cores it cannot see.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace fastembed {

// More L3 per core than any shipping part has (AMD's X3D parts: 12 MiB; EPYC 4, Xeon about 2):
// only a claim no real core's share could back is cut.
inline constexpr std::size_t kMaxL3BytesPerCore = std::size_t{16} << 20;

struct CacheSizes {
    std::size_t l1d = 0;  // bytes; 0: unknown
    std::size_t l2 = 0;
    std::size_t l3 = 0;
};

struct HostCaches {
    CacheSizes sysfs;     // as Linux reports them (0 where it does not)
    CacheSizes cpuid;     // as the CPU reports them (0 where it does not, or not x86)
    CacheSizes used;      // what the kernels use
    std::string source;   // where `used` came from, per level: "l1d=sysfs l2=env l3=cpuid,capped"
};

// The detected sizes; computed on the first call, thread-safe.
const HostCaches& host_caches();

// The budgets derived from them (each says why at its use).
// Rows a loop over scattered rows prefetches ahead: half the L1d.
inline std::size_t prefetch_bytes() { return host_caches().used.l1d / 2; }
// Outputs from this size on are written around the cache: a quarter of the L3.
inline std::size_t streaming_bytes() { return host_caches().used.l3 / 4; }

// Detection with the environment read through `getenv`, sysfs read under `sysfs_cache_dir`
// (.../cpu0/cache), CPUID asked only if `ask_cpuid`, the L3 capped for `cores` cores: tests
// pass their own.
HostCaches detect_host_caches(const std::function<const char*(const char*)>& getenv,
                              std::size_t cores, const std::string& sysfs_cache_dir,
                              bool ask_cpuid);

}  // namespace fastembed
