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
// Loops over an accumulator's vectors must be unrolled for the vectors to become registers.
#define FASTEMBED_UNROLL _Pragma("GCC unroll 16")
#define FASTEMBED_LANE_VECTORS 1
#else
#define FASTEMBED_ALWAYS_INLINE inline
#define FASTEMBED_UNROLL
#endif

// Kernels whose speed is the instruction count per row (the pooled loop, bag.hpp; packing,
// quantize.hpp) are compiled twice on x86-64, for the baseline and for AVX2 + F16C, and pick the
// AVX2 copy at run time where the CPU has both (a build for AVX2 itself needs no second copy).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__AVX2__)
#define FASTEMBED_AVX2_CLONE 1
#endif

namespace fastembed {

#ifdef FASTEMBED_AVX2_CLONE
namespace detail {
// (Every AVX2 CPU has F16C; the check is for emulators that differ.)
inline bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    return has;
}
}  // namespace detail
#endif

// The instruction set a copy of a kernel is compiled for: the baseline (SSE2 on x86-64), or AVX2
// with F16C (picked at run time: FASTEMBED_AVX2_CLONE above). Row readers and packing choose
// their lane groups by it.
enum class Isa { baseline, avx2 };

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
