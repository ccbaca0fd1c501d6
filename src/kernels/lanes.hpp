// Groups of 4, 8 or 16 lanes for the element conversions of the row readers (float16, bfloat16
// and quantized codes widened to float32), two ways:
// - GCC/Clang vector extensions (Lanes<L>, 4 or 8 lanes), one source for every instruction set;
//   lowered to SSE2 in the baseline copy of a kernel (GCC 12 widens bytes to int32 lanes in ~9
//   shuffles);
// - in the AVX2 and AVX-512 copies of the pooled loop (bag.hpp: Isa::avx2, Isa::avx512),
//   intrinsics, one or two instructions per group of 8 or 16 (vcvtph2ps, vpmovzxbd +
//   vcvtdq2ps).
// Where neither exists (FASTEMBED_LANE_VECTORS undefined) callers convert element by element.
// All give the same bits: every conversion is exact, or the same float operations in the same
// order (no FMA, but for the quantized readers' exact one: see the kernel copies below).
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
// once the loop has been inlined into its AVX2 copy.
#define FASTEMBED_AVX2_F16C __attribute__((target("avx2,f16c")))
// The same with FMA, for the quantized rows' code * scale + bias (quantize.hpp).
#define FASTEMBED_AVX2_FMA __attribute__((target("avx2,f16c,fma")))
// The same for the 16-lane groups of the AVX-512 copy.
#define FASTEMBED_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,fma")))
namespace fastembed {
// Every lane, the mask of the zero-masked forms of AVX-512 conversions and shifts: the same
// instruction as the unmasked intrinsic, whose undefined pass-through source GCC 12 reports as
// uninitialised (-Wmaybe-uninitialized) once inlined.
inline constexpr __mmask16 kAllLanes = 0xFFFF;
}  // namespace fastembed
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

// Kernels whose speed is the instruction count per row (on_this_cpu below) are compiled on
// x86-64 for the baseline and for AVX2 + F16C, the pooled loop also for AVX-512, and pick at run
// time the widest copy the CPU runs (a build for AVX2 or AVX-512 itself needs fewer copies).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define FASTEMBED_BUILD_AVX512 1  // the build itself targets the AVX-512 the copy would use
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FASTEMBED_X86_COPIES 1
#if !(defined(__AVX2__) && defined(__F16C__) && defined(__FMA__))
#define FASTEMBED_AVX2_CLONE 1
#endif
#if !defined(FASTEMBED_BUILD_AVX512)
#define FASTEMBED_AVX512_CLONE 1
#endif
#endif

namespace fastembed {

// The instruction set a copy of a kernel is compiled for, narrowest first: the baseline (SSE2 on
// x86-64), AVX2 with F16C and FMA, or AVX-512 (F, BW, VL, DQ) with them. Row readers and
// packing choose their lane groups by it.
enum class Isa { baseline, avx2, avx512 };

template <Isa isa>
using IsaTag = std::integral_constant<Isa, isa>;

// The instruction set of this build's own copy of a kernel.
#if defined(FASTEMBED_BUILD_AVX512)
inline constexpr Isa kBuildIsa = Isa::avx512;
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
inline constexpr Isa kBuildIsa = Isa::avx2;
#else
inline constexpr Isa kBuildIsa = Isa::baseline;
#endif

#ifdef FASTEMBED_X86_COPIES
namespace detail {
// The widest copy this CPU runs: AVX-512 where it has F, BW, VL and DQ and also VBMI2 (Ice Lake,
// Zen 4 and later: the generations whose 512-bit units do not lower the clock much; Skylake's
// and Cascade Lake's do, and they keep the AVX2 copy), AVX2 where it has AVX2, F16C and FMA
// (every AVX2 CPU has both; the check is for emulators that differ). FASTEMBED_ISA=avx2 or
// =baseline caps it (every copy gives the same bits; the tests compare them).
inline Isa cpu_isa() {
    static const Isa isa = [] {
        const char* cap = std::getenv("FASTEMBED_ISA");
        if (cap != nullptr && std::strcmp(cap, "baseline") == 0) return Isa::baseline;
        const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
                          __builtin_cpu_supports("fma");
        if (!avx2) return Isa::baseline;
        if (cap != nullptr && std::strcmp(cap, "avx2") == 0) return Isa::avx2;
        const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512vbmi2");
        return avx512 ? Isa::avx512 : Isa::avx2;
    }();
    return isa;
}
}  // namespace detail
#endif

namespace detail {
// The copies of a kernel `body`: a generic lambda taking an IsaTag, marked
// FASTEMBED_INLINE_LAMBDA, whose loops are FASTEMBED_ALWAYS_INLINE functions or lambdas or small
// enough that GCC inlines them (row readers, sources, sinks, updates), so they are compiled into
// each copy for its instruction set. No copy contracts a multiply and an add into an FMA (the
// build adds -ffp-contract=off): all do the same float operations in the same order. The one
// fused multiply-add asked for by name (a quantized code's code * scale + bias, quantize.hpp) is
// exact in every copy: an instruction in AVX2 and AVX-512, std::fma in the baseline.
template <class Body>
decltype(auto) call_build_copy(const Body& body) {
    return body(IsaTag<kBuildIsa>{});
}
#ifdef FASTEMBED_AVX2_CLONE
template <class Body>
FASTEMBED_AVX2_FMA decltype(auto) call_avx2_copy(const Body& body) {
    return body(IsaTag<Isa::avx2>{});
}
#endif
#ifdef FASTEMBED_AVX512_CLONE
template <class Body>
FASTEMBED_AVX512 decltype(auto) call_avx512_copy(const Body& body) {
    return body(IsaTag<Isa::avx512>{});
}
#endif
}  // namespace detail

// Runs body(IsaTag<isa>{}) in the widest copy, up to Widest, that this CPU runs
// (detail::cpu_isa) and the build does not already cover (FASTEMBED_*_CLONE), else the build's
// own. For loops whose time is their instruction count once their rows are in the cache: the
// pooled loop (bag.hpp, up to AVX-512: 8-bit bags of 1M Zipf ids, D=64, 2 threads, 3.6 ->
// 2.9 ms), packing (quantize.hpp), the reductions of every backward and the updates they feed
// (runs.hpp, blocked_reduce.hpp; a backward with SGD of 1M Zipf ids: 43 -> 36 ms with AVX2).
template <Isa Widest = Isa::avx2, class Body>
decltype(auto) on_this_cpu(const Body& body) {
#ifdef FASTEMBED_AVX512_CLONE
    if constexpr (Widest == Isa::avx512) {
        if (detail::cpu_isa() == Isa::avx512) return detail::call_avx512_copy(body);
    }
#endif
#ifdef FASTEMBED_AVX2_CLONE
    if (detail::cpu_isa() >= Isa::avx2) return detail::call_avx2_copy(body);
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
