// Groups of 4 or 8 lanes for the element conversions of the row readers (float16, bfloat16 and
// quantized codes widened to float32), two ways:
// - GCC/Clang vector extensions (Lanes<L>), one source for every instruction set; lowered to
//   SSE2 in the baseline copy of a kernel (GCC 12 widens bytes to int32 lanes in ~9 shuffles);
// - in the AVX2 copy of the pooled loop (bag.hpp: Isa::avx2), AVX2 + F16C intrinsics, one or
//   two instructions per group of 8 (vcvtph2ps, vpmovzxbd + vcvtdq2ps).
// Where neither exists (FASTEMBED_LANE_VECTORS undefined) callers convert element by element.
// All give the same bits: every conversion is exact, or the same float operations in the same
// order (no FMA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
// The AVX2 + F16C lane groups below exist (they run only where a kernel's AVX2 copy runs).
#define FASTEMBED_AVX2_LANES 1
// Marks them: a function with a target attribute cannot be force-inlined into the shared loop
// template (compiled for the baseline), so these are plain inline functions that GCC inlines
// once the loop has been inlined into its target("avx2,f16c") copy.
#define FASTEMBED_AVX2_F16C __attribute__((target("avx2,f16c")))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FASTEMBED_ALWAYS_INLINE __attribute__((always_inline)) inline
// For a lambda (the body of a kernel copy: on_this_cpu below).
#define FASTEMBED_INLINE_LAMBDA __attribute__((always_inline))
// Loops over an accumulator's vectors must be unrolled for the vectors to become registers.
#define FASTEMBED_UNROLL _Pragma("GCC unroll 16")
#define FASTEMBED_LANE_VECTORS 1
#else
#define FASTEMBED_ALWAYS_INLINE inline
#define FASTEMBED_INLINE_LAMBDA
#define FASTEMBED_UNROLL
#endif

// Kernels whose speed is the instruction count per row (on_this_cpu below) are compiled twice on
// x86-64, for the baseline and for AVX2 + F16C, and pick the AVX2 copy at run time where the CPU
// has both (a build for AVX2 itself needs no second copy).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__AVX2__)
#define FASTEMBED_AVX2_CLONE 1
#endif

namespace fastembed {

#ifdef FASTEMBED_AVX2_CLONE
namespace detail {
// Whether the AVX2 copies run: the CPU has AVX2 and F16C (every AVX2 CPU has F16C; the check is
// for emulators that differ), unless FASTEMBED_ISA=baseline asks for the baseline copies (both
// give the same bits; the tests compare them).
inline bool cpu_has_avx2() {
    static const bool has = [] {
        const char* isa = std::getenv("FASTEMBED_ISA");
        if (isa != nullptr && std::strcmp(isa, "baseline") == 0) return false;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }();
    return has;
}
}  // namespace detail
#endif

// The instruction set a copy of a kernel is compiled for: the baseline (SSE2 on x86-64), or AVX2
// with F16C (picked at run time: FASTEMBED_AVX2_CLONE above). Row readers and packing choose
// their lane groups by it.
enum class Isa { baseline, avx2 };

template <Isa isa>
using IsaTag = std::integral_constant<Isa, isa>;

// The instruction set of this build's own copy of a kernel.
#if defined(__AVX2__) && defined(__F16C__)
inline constexpr Isa kBuildIsa = Isa::avx2;
#else
inline constexpr Isa kBuildIsa = Isa::baseline;
#endif

namespace detail {
// The copies of a kernel `body`: a generic lambda taking an IsaTag, marked
// FASTEMBED_INLINE_LAMBDA, whose loops are FASTEMBED_ALWAYS_INLINE functions or lambdas or small
// enough that GCC inlines them (row readers, sources, sinks, updates), so they are compiled into
// each copy for its instruction set. Neither copy has FMA: both do the same float operations in
// the same order.
template <class Body>
decltype(auto) call_build_copy(const Body& body) {
    return body(IsaTag<kBuildIsa>{});
}
#ifdef FASTEMBED_AVX2_CLONE
template <class Body>
__attribute__((target("avx2,f16c"))) decltype(auto) call_avx2_copy(const Body& body) {
    return body(IsaTag<Isa::avx2>{});
}
#endif
}  // namespace detail

// Runs body(IsaTag<isa>{}) in the copy compiled for this CPU: the AVX2 one where the CPU has it
// and the build is for the baseline (FASTEMBED_AVX2_CLONE), else the build's own. For loops
// whose time is their instruction count once their rows are in the cache: the pooled loop
// (bag.hpp), packing (quantize.hpp), the reductions of every backward and the updates they
// feed (runs.hpp, blocked_reduce.hpp; a backward with SGD of 1M Zipf ids, D=64, 2 threads:
// 43 -> 36 ms).
template <class Body>
decltype(auto) on_this_cpu(const Body& body) {
#ifdef FASTEMBED_AVX2_CLONE
    if (detail::cpu_has_avx2()) return detail::call_avx2_copy(body);
#endif
    return detail::call_build_copy(body);
}

#ifdef FASTEMBED_LANE_VECTORS
// L lanes of each element type a conversion passes through. Values are moved in and out with
// memcpy, and helpers take pointers, never vectors by value (a 32-byte vector argument changes
// the ABI of a function compiled without AVX).
template <std::size_t L>
struct Lanes {
    static_assert(L == 4 || L == 8, "groups of 4 (SSE2) or 8 (AVX2) float32 lanes");
    typedef float floats __attribute__((vector_size(4 * L)));
    typedef std::int32_t ints __attribute__((vector_size(4 * L)));
    typedef std::uint32_t words __attribute__((vector_size(4 * L)));
    typedef std::uint16_t halves __attribute__((vector_size(2 * L)));
    typedef std::uint8_t bytes __attribute__((vector_size(L)));
    typedef std::uint8_t nibble_pairs __attribute__((vector_size(L / 2)));
};
#endif

}  // namespace fastembed
