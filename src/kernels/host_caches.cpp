#include "kernels/host_caches.hpp"

#include <cstdlib>
#include <fstream>
#include <string>

#include "kernels/thread_pool.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define FASTEMBED_HAVE_CPUID 1
#endif

namespace fastembed {

namespace {

// Fallbacks where nothing answers: small enough for any current core.
constexpr CacheSizes kFallback{std::size_t{32} << 10, std::size_t{512} << 10, std::size_t{4} << 20};

// "48K", "2048K", "8M", "1024": bytes, 0 if unreadable.
std::size_t parse_size(const std::string& text) {
    std::size_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        value = value * 10 + static_cast<std::size_t>(text[i] - '0');
    }
    if (i == 0) return 0;
    if (i < text.size()) {
        if (text[i] == 'K') return value << 10;
        if (text[i] == 'M') return value << 20;
        if (text[i] == 'G') return value << 30;
    }
    return value;
}

std::string read_line(const std::string& path) {
    std::ifstream file(path);
    std::string line;
    std::getline(file, line);
    return line;
}

void set_level(CacheSizes& sizes, int level, bool data_or_unified, std::size_t bytes) {
    if (!data_or_unified || bytes == 0) return;
    if (level == 1) sizes.l1d = bytes;
    if (level == 2) sizes.l2 = bytes;
    if (level == 3) sizes.l3 = bytes;
}

CacheSizes sysfs_caches(const std::string& cache_dir) {
    CacheSizes sizes;
    for (int index = 0; index < 16; ++index) {
        const std::string dir = cache_dir + "/index" + std::to_string(index) + "/";
        const std::string level = read_line(dir + "level");
        if (level.empty()) break;
        const std::string type = read_line(dir + "type");
        set_level(sizes, std::atoi(level.c_str()), type == "Data" || type == "Unified",
                  parse_size(read_line(dir + "size")));
    }
    return sizes;
}

CacheSizes cpuid_caches() {
    CacheSizes sizes;
#ifdef FASTEMBED_HAVE_CPUID
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return sizes;
    const bool amd = ebx == 0x68747541;  // "Auth" of "AuthenticAMD"
    unsigned leaf = 4;
    if (amd) {
        // AMD describes its caches in leaf 0x8000001D when the topology extensions are there.
        unsigned max_extended = __get_cpuid_max(0x80000000, nullptr);
        if (max_extended < 0x8000001D) return sizes;
        __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx);
        if ((ecx & (1u << 22)) == 0) return sizes;
        leaf = 0x8000001D;
    } else if (eax < 4) {
        return sizes;
    }
    for (unsigned sub = 0; sub < 16; ++sub) {
        __cpuid_count(leaf, sub, eax, ebx, ecx, edx);
        const unsigned type = eax & 31;  // 0: no more caches; 1 data, 2 instruction, 3 unified
        if (type == 0) break;
        const std::size_t ways = ((ebx >> 22) & 1023) + 1;
        const std::size_t partitions = ((ebx >> 12) & 1023) + 1;
        const std::size_t line = (ebx & 4095) + 1;
        const std::size_t sets = std::size_t{ecx} + 1;
        set_level(sizes, static_cast<int>((eax >> 5) & 7), type == 1 || type == 3,
                  ways * partitions * line * sets);
    }
#endif
    return sizes;
}

// A positive decimal byte count, else 0.
std::size_t env_bytes(const std::function<const char*(const char*)>& getenv, const char* name) {
    const char* text = getenv(name);
    if (text == nullptr || *text == '\0') return 0;
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (*end != '\0' || text[0] == '-') return 0;
    return static_cast<std::size_t>(value);
}

// One level's size and where it came from.
std::size_t choose(std::size_t env, std::size_t sysfs, std::size_t cpuid, std::size_t fallback,
                   const char* level, std::string& source) {
    source += source.empty() ? "" : " ";
    source += level;
    if (env != 0) {
        source += "=env";
        return env;
    }
    if (sysfs != 0 && (cpuid == 0 || sysfs <= cpuid)) {
        source += "=sysfs";
        return sysfs;
    }
    if (cpuid != 0) {
        source += "=cpuid";
        return cpuid;
    }
    source += "=fallback";
    return fallback;
}

}  // namespace

HostCaches detect_host_caches(const std::function<const char*(const char*)>& getenv,
                              std::size_t cores, const std::string& sysfs_cache_dir,
                              bool ask_cpuid) {
    HostCaches caches;
    caches.sysfs = sysfs_caches(sysfs_cache_dir);
    if (ask_cpuid) caches.cpuid = cpuid_caches();
    std::string& source = caches.source;
    CacheSizes& used = caches.used;
    used.l1d = choose(env_bytes(getenv, "FASTEMBED_L1D_BYTES"), caches.sysfs.l1d, caches.cpuid.l1d,
                      kFallback.l1d, "l1d", source);
    used.l2 = choose(env_bytes(getenv, "FASTEMBED_L2_BYTES"), caches.sysfs.l2, caches.cpuid.l2,
                     kFallback.l2, "l2", source);
    const std::size_t l3_env = env_bytes(getenv, "FASTEMBED_L3_BYTES");
    used.l3 = choose(l3_env, caches.sysfs.l3, caches.cpuid.l3, kFallback.l3, "l3", source);
    const std::size_t cap = kMaxL3BytesPerCore * (cores == 0 ? 1 : cores);
    if (l3_env == 0 && used.l3 > cap) {
        used.l3 = cap;
        source += ",capped";
    }
    return caches;
}

const HostCaches& host_caches() {
    static const HostCaches caches =
        detect_host_caches([](const char* name) -> const char* { return std::getenv(name); },
                           available_cores(), "/sys/devices/system/cpu/cpu0/cache", true);
    return caches;
}

}  // namespace fastembed
