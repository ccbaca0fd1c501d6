// Row-level memory primitives shared by the kernels: copies that may bypass the cache, zeroing,
// accumulation and prefetching.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/host_caches.hpp"
#include "kernels/lanes.hpp"
#include "kernels/prefetch_plan.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FASTEMBED_HAVE_SSE2 1
#endif

namespace fastembed {

// On x86 the prefetch is a volatile asm statement: __builtin_prefetch has no side effects the
// optimiser can see, and GCC deletes it together with any helper it ends up in (a lambda, say)
// once interprocedural analysis marks that helper as const.
template <CacheLevel level = CacheLevel::l1>
inline void prefetch_read(const void* address) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (level == CacheLevel::l1) {
        asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(address)));
    } else {
        asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(address)));
    }
#elif defined(__GNUC__)
    __builtin_prefetch(address, 0, level == CacheLevel::l1 ? 3 : 2);
#else
    (void)address;
#endif
}

// Prefetches the cache lines from address `first` to `last` (both line starts), the two ends first.
template <CacheLevel level>
inline void prefetch_lines(std::uintptr_t first, std::uintptr_t last) {
    prefetch_read<level>(reinterpret_cast<const void*>(first));
    prefetch_read<level>(reinterpret_cast<const void*>(last));
    for (std::uintptr_t line = first + 64; line < last; line += 64) {
        prefetch_read<level>(reinterpret_cast<const void*>(line));
    }
}

// Prefetches a row, up to its first 4 KiB (a page; the hardware prefetcher follows longer
// rows), into `level`. The hardware does not follow shorter ones far enough: fetching only the
// first 1 KiB of 2 KiB rows made a backward 1.45x slower (V=50k D=512 float32, one thread), only
// the first 256 bytes of 1 KiB rows 2.5x.
// Every cache line the span touches is fetched: a large NumPy array's data usually starts 16
// bytes into a page (malloc's header), so a 256-byte row spans five lines, not four, and
// stepping 64 bytes from the row's start would leave its last line to a demand miss.
// The first and last lines are fetched before any between them: no branch depends on where a
// row starts, and rows of one or two lines run no loop. On an AMD EPYC (Zen 3), whose loop
// issues these for every row of a pooled bag, that took bags of 1M ids over a 1M x 64 float32
// table from 21.1 to 19.9 ms (uniform ids) and 7.4 to 5.9 ms (Zipf) where the table starts on a
// line, 23.3 to 21.6 and 8.7 to 8.2 where it starts 16 bytes past one, 2 threads (a line
// fetched twice, the one line of a short row, costs one load slot). Speed only.
inline void prefetch_row(const void* row, std::size_t row_bytes, CacheLevel level) {
    const std::size_t span = row_bytes < 4096 ? row_bytes : 4096;
    if (span == 0) return;
    const auto first = reinterpret_cast<std::uintptr_t>(row) & ~std::uintptr_t{63};
    const auto last = (reinterpret_cast<std::uintptr_t>(row) + span - 1) & ~std::uintptr_t{63};
    if (level == CacheLevel::l2) {
        prefetch_lines<CacheLevel::l2>(first, last);
    } else {
        prefetch_lines<CacheLevel::l1>(first, last);
    }
}

// The same, into the cache the plan in force names for rows of its size (prefetch_plan.hpp).
inline void prefetch_row(const void* row, std::size_t row_bytes) {
    prefetch_row(row, row_bytes, prefetch_plan().level_for(row_bytes));
}

// Tables of at most this many bytes are read without prefetching: the L2. Their rows stay in
// each core's L2, whose latency the out-of-order window covers, and the prefetches' own
// instructions (the next id, its range test, a prefetch per line) only slowed the loop. Sum bags
// of 1M uniform ids, bags of 1..39, float32 rows, 2 threads, Zen 4 (1 MiB L2), the pooled loop
// alone, time without prefetching over time with it:
//   D=16: 0.51 (512 KiB table), 0.62 (1 MiB), 0.62 (2 MiB), 0.67 (4 MiB), 0.87 (8 MiB), 1.54 (16)
//   D=64: 0.65-0.76 (256 KiB-1 MiB), 0.89 (2 MiB), 0.95-1.05 (4 MiB), 1.03 (8 MiB), 1.52 (16)
//   D=128: 0.85 (512 KiB), 0.88 (1 MiB), 0.92 (2 MiB), 1.03 (4 MiB), 1.18 (16 MiB)
// Past the L2 the rows come from the L3, whose latency depends on the host, and prefetching
// soon wins: the limit stays at the L2 rather than at this host's break-even.
inline std::size_t unprefetched_table_bytes() { return host_caches().used.l2; }

// How many rows ahead a loop that is about to read `bytes_read` bytes of scattered rows of
// `row_bytes` prefetches, under the plan in force (prefetch_plan.hpp; the first such loop to
// read more than the L3 holds calibrates it); 0, no prefetching, where the rows come from a
// table of `table_bytes` that fits in the L2 (unprefetched_table_bytes; loops that pass it
// handle 0). Speed only: no result depends on it.
inline std::size_t prefetch_distance(std::size_t row_bytes, std::size_t bytes_read,
                                     std::size_t table_bytes = SIZE_MAX) {
    if (table_bytes <= unprefetched_table_bytes()) return 0;
    plan_prefetch_for(bytes_read);
    return prefetch_plan().distance(row_bytes);
}

#ifdef FASTEMBED_X86_COPIES
// Non-temporal stores of the 64-byte lines from dst + begin to dst + end (both line boundaries),
// in one store per line (AVX-512) or two (AVX2); src (zeros if null) needs no alignment.
// Functions of their own, called rather than inlined: they are compiled for their instruction
// set, their callers for the baseline.
FASTEMBED_AVX512 inline void stream_lines_avx512(char* dst, const char* src, std::size_t begin,
                                                 std::size_t end) {
    for (std::size_t offset = begin; offset < end; offset += 64) {
        const __m512i line = src != nullptr ? _mm512_loadu_si512(src + offset) : _mm512_setzero_si512();
        _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + offset), line);
    }
}
FASTEMBED_AVX2_F16C inline void stream_lines_avx2(char* dst, const char* src, std::size_t begin,
                                                  std::size_t end) {
    for (std::size_t offset = begin; offset < end; offset += 32) {
        const __m256i half = src != nullptr
                                 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + offset))
                                 : _mm256_setzero_si256();
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + offset), half);
    }
}

// The copies of stream_lines_avx512 four lines at a time, the four loads before the four stores,
// from dst + begin (a line boundary) for as many whole groups as end leaves room for; returns
// where they stopped. With one load and one store per line, the stores of a dense backward's
// rows into a line-aligned result (the result fastembed allocates) stalled: scatter_add of
// V=1M, D=64, 1M uniform ids, 2 threads, AMD EPYC Zen 4, 1.05-1.14x faster this way (both
// builds in one process, median ratio of 21-41 interleaved rounds; a build against itself reads
// 0.98-1.02). Not a gain everywhere: a gather into a new result read 0.92-0.98x and the pooled
// backward 0.84-1.04x in the same runs, both bound by other things; the AVX2 copy of the
// grouping (eight loads, eight stores) read 1.06x on the backward and 0.92x on the gather, so
// AVX2 keeps the loop.
inline constexpr std::size_t kStreamLineGroup = 4;  // lines per group
inline constexpr std::size_t kStreamLineGroupBytes = kStreamLineGroup * 64;
FASTEMBED_AVX512 inline std::size_t stream_line_groups_avx512(char* dst, const char* src, std::size_t begin,
                                                              std::size_t end) {
    std::size_t offset = begin;
    for (; end - offset >= kStreamLineGroupBytes; offset += kStreamLineGroupBytes) {
        __m512i lines[kStreamLineGroup];
        for (std::size_t j = 0; j < kStreamLineGroup; ++j) {
            lines[j] = _mm512_loadu_si512(src + offset + 64 * j);
        }
        for (std::size_t j = 0; j < kStreamLineGroup; ++j) {
            _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + offset + 64 * j), lines[j]);
        }
    }
    return offset;
}
#endif

// Writes rows either through the cache (plain stores) or around it (non-temporal stores).
// A streaming writer must be finished with finish() before another thread reads what it wrote.
class RowWriter {
  public:
    // Streams when the whole output is large (streaming_bytes(), a quarter of the L3: 8 MiB on
    // a 32 MiB L3): it would only evict the table and ids the kernel still needs, and a
    // write-allocate doubles the bytes a plain store moves. Only for rows of whole 16-byte
    // units: rows of other lengths share cache lines with their neighbours, and mixing plain
    // and non-temporal stores on one line forces the line out early (28-byte rows were 50x
    // slower streamed).
    RowWriter(std::size_t output_bytes, std::size_t row_bytes)
        : streaming_(output_bytes >= streaming_bytes() && row_bytes % 16 == 0),
          line_stores_(streaming_ ? line_store_isa() : Isa::baseline) {}

    // Whether its stores go around the cache (finish() then orders them).
    bool streams() const { return streaming_; }

    void copy(void* dst, const void* src, std::size_t bytes) const {
#if FASTEMBED_HAVE_SSE2
        if (streaming_) {
            stream(static_cast<char*>(dst), static_cast<const char*>(src), bytes);
            return;
        }
#endif
        std::memcpy(dst, src, bytes);
    }

    void zero(void* dst, std::size_t bytes) const {
#if FASTEMBED_HAVE_SSE2
        if (streaming_) {
            stream(static_cast<char*>(dst), nullptr, bytes);
            return;
        }
#endif
        std::memset(dst, 0, bytes);
    }

    // Orders this thread's non-temporal stores before anything it does next.
    void finish() const {
#if FASTEMBED_HAVE_SSE2
        if (streaming_) _mm_sfence();
#endif
    }

  private:
#if FASTEMBED_HAVE_SSE2
    // Copies src (zeros if null) to [dst, dst + bytes): the 16-byte-aligned middle with
    // non-temporal stores, unaligned ends with plain ones. Rows of whole aligned units (the usual
    // case) go straight to the store loop: 64-byte rows copied 15% faster than through the
    // general head/tail path.
    void stream(char* dst, const char* src, std::size_t bytes) const {
        const auto address = reinterpret_cast<std::uintptr_t>(dst);
        if (((address | bytes) & 15) == 0) {
            stream_body(dst, src, 0, bytes);
            return;
        }
        std::size_t head = (16 - (address & 15)) & 15;
        if (head > bytes) head = bytes;
        const std::size_t body_end = head + ((bytes - head) & ~std::size_t{15});
        if (head != 0) plain(dst, src, 0, head);
        stream_body(dst, src, head, body_end);
        if (body_end != bytes) plain(dst, src, body_end, bytes - body_end);
    }

    // Non-temporal stores of [begin, end), a multiple of 16 bytes at a 16-byte-aligned address:
    // its whole cache lines in the widest stores the CPU has, the rest 16 bytes at a time. Fewer
    // stores per row leave more of the store queue to the rows in flight. AMD EPYC Zen 4, 2
    // threads, 1M rows of 256 bytes gathered in position order into an output 16 bytes past a
    // line, median ms over 11-21 interleaved rounds in one process: 16-byte stores 27-35, 32-byte
    // 21-26, 64-byte 19-20 in a slow spell of the host, 20.3 against 16.4 (64-byte) in a quiet
    // one; through Python beside a neighbour streaming 256 MiB, 31-33 against 26-27 (64-byte).
    // Never slower.
    void stream_body(char* dst, const char* src, std::size_t begin, std::size_t end) const {
#ifdef FASTEMBED_X86_COPIES
        const auto address = reinterpret_cast<std::uintptr_t>(dst);
        const std::uintptr_t first_line = (address + begin + 63) & ~std::uintptr_t{63};
        const std::uintptr_t end_line = (address + end) & ~std::uintptr_t{63};
        if (line_stores_ != Isa::baseline && first_line < end_line) {
            stream_units(dst, src, begin, first_line - address);
            std::size_t lines_begin = first_line - address;
            const std::size_t lines_end = end_line - address;
            if (line_stores_ == Isa::avx512) {
                // (Rows of fewer than four whole lines, such as 256-byte rows 16 bytes past a
                // line, skip the call.)
                if (src != nullptr && lines_end - lines_begin >= kStreamLineGroupBytes) {
                    lines_begin = stream_line_groups_avx512(dst, src, lines_begin, lines_end);
                }
                stream_lines_avx512(dst, src, lines_begin, lines_end);
            } else {
                stream_lines_avx2(dst, src, lines_begin, lines_end);
            }
            stream_units(dst, src, end_line - address, end);
            return;
        }
#endif
        stream_units(dst, src, begin, end);
    }

    // Non-temporal 16-byte stores of [begin, end), a multiple of 16 bytes at a 16-byte-aligned
    // address.
    static void stream_units(char* dst, const char* src, std::size_t begin, std::size_t end) {
        if (src != nullptr) {
            for (std::size_t offset = begin; offset < end; offset += 16) {
                _mm_stream_si128(reinterpret_cast<__m128i*>(dst + offset),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + offset)));
            }
        } else {
            for (std::size_t offset = begin; offset < end; offset += 16) {
                _mm_stream_si128(reinterpret_cast<__m128i*>(dst + offset), _mm_setzero_si128());
            }
        }
    }

    static void plain(char* dst, const char* src, std::size_t offset, std::size_t count) {
        if (src != nullptr) {
            std::memcpy(dst + offset, src + offset, count);
        } else {
            std::memset(dst + offset, 0, count);
        }
    }
#endif

    // The widest stores of whole lines this CPU has: those of the copy of the kernels that runs
    // here (lanes.hpp; FASTEMBED_ISA caps it), or none (16-byte stores only).
    static Isa line_store_isa() {
#ifdef FASTEMBED_X86_COPIES
        return detail::cpu_isa();
#else
        return Isa::baseline;
#endif
    }

    bool streaming_;
    Isa line_stores_;
};

template <class T>
inline void add_row(T* __restrict acc, const T* __restrict row, std::size_t dim) {
    for (std::size_t d = 0; d < dim; ++d) acc[d] += row[d];
}

}  // namespace fastembed
