// Groups of 4 or 8 lanes for the element conversions of the row readers (float16, bfloat16 and
// quantized codes widened to float32): GCC/Clang vector extensions, so one source serves every
// instruction set a kernel is compiled for. In the AVX2 copy of the pooled loop (bag.hpp) a
// group of 8 float32 lanes is one register and a conversion a few instructions
// (vpmovzx + shifts or vcvtdq2ps); in the baseline copy it is lowered to SSE2 pairs. Where the
// extensions are missing (FASTEMBED_LANE_VECTORS undefined) callers convert element by element,
// which gives the same bits: every conversion here is exact or the same float operations in the
// same order.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define FASTEMBED_ALWAYS_INLINE __attribute__((always_inline)) inline
// Loops over an accumulator's vectors must be unrolled for the vectors to become registers.
#define FASTEMBED_UNROLL _Pragma("GCC unroll 16")
#define FASTEMBED_LANE_VECTORS 1
#else
#define FASTEMBED_ALWAYS_INLINE inline
#define FASTEMBED_UNROLL
#endif

namespace fastembed {

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
