// float16 and bfloat16 storage: 2-byte elements that kernels widen to float32 on load and
// narrow back on store, so every sum and update runs in float32 and is rounded once, when
// written.
//
// Element<S> names the arithmetic type of a storage type S (float for float32, float16 and
// bfloat16, double for float64) and converts both ways; plain float and double pass through, so
// one kernel template serves every table dtype. Narrowing rounds to nearest, ties to even (as
// NumPy, ml_dtypes and PyTorch do). The conversions are branch-free bit arithmetic (they
// vectorise, and need no F16C), valid under the default floating-point environment (no
// flush-to-zero).
//
// Stochastic rounding (for optimizer updates of half tables, as FBGEMM offers) picks one of the
// two neighbours of a value with probability proportional to its nearness, from a counter-based
// stream keyed by (seed, step, row, element): the result of an element never depends on which
// thread computed it.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/lanes.hpp"
#include "kernels/row_ops.hpp"

namespace fastembed {

struct Float16 {
    std::uint16_t bits;
};

struct BFloat16 {
    std::uint16_t bits;
};

namespace detail {

inline std::uint32_t float_bits(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

inline float bits_float(std::uint32_t bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// IEEE binary16 -> binary32, exact. Normal numbers are rebased by a multiplication that also
// carries infinities and NaNs; subnormals come out of a float subtraction.
inline float half_to_float(std::uint16_t half) {
    const std::uint32_t word = static_cast<std::uint32_t>(half) << 16;
    const std::uint32_t sign = word & 0x80000000u;
    const std::uint32_t doubled = word + word;  // the sign shifted out
    const float normal = bits_float((doubled >> 4) + (std::uint32_t{0xE0} << 23)) * 0x1.0p-112f;
    const float subnormal = bits_float((doubled >> 17) | (std::uint32_t{126} << 23)) - 0.5f;
    const std::uint32_t magnitude =
        doubled < (std::uint32_t{1} << 27) ? float_bits(subnormal) : float_bits(normal);
    return bits_float(sign | magnitude);
}

// binary32 -> binary16, round to nearest even; overflow gives infinity. Scaling by 2^112 then
// 2^-110 leaves the value rounded at binary16's precision by the float unit itself. A NaN stays
// a NaN as F16C's vcvtps2ph makes it (the quiet bit set, the payload's top 9 bits kept), so the
// AVX2 copy of a kernel narrows to the same bits.
inline std::uint16_t float_to_half(float value) {
    float base = (std::fabs(value) * 0x1.0p+112f) * 0x1.0p-110f;
    const std::uint32_t word = float_bits(value);
    const std::uint32_t doubled = word + word;
    const std::uint32_t sign = word & 0x80000000u;
    std::uint32_t bias = doubled & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = bits_float((bias >> 1) + 0x07800000u) + base;
    const std::uint32_t bits = float_bits(base);
    const std::uint32_t exponent = (bits >> 13) & 0x00007C00u;
    const std::uint32_t mantissa = bits & 0x00000FFFu;
    const std::uint32_t nan = 0x7E00u | ((word >> 13) & 0x01FFu);
    const std::uint32_t magnitude = doubled > 0xFF000000u ? nan : exponent + mantissa;
    return static_cast<std::uint16_t>((sign >> 16) | magnitude);
}

inline float bfloat16_to_float(std::uint16_t bits) {
    return bits_float(static_cast<std::uint32_t>(bits) << 16);
}

// binary32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t float_to_bfloat16(float value) {
    const std::uint32_t word = float_bits(value);
    const std::uint32_t rounded = (word + 0x7FFFu + ((word >> 16) & 1u)) >> 16;
    const bool nan = (word & 0x7FFFFFFFu) > 0x7F800000u;
    return static_cast<std::uint16_t>(nan ? (word >> 16) | 0x40u : rounded);
}

#ifdef FASTEMBED_LANE_VECTORS
// Calls convert(lanes) for the groups of 8 lanes from element d on, then for one group of 4 if
// that many remain (lanes: an std::integral_constant), advancing d past each.
template <class Convert>
FASTEMBED_ALWAYS_INLINE void over_lane_groups(std::size_t& d, std::size_t n, Convert&& convert) {
    for (; d + 8 <= n; d += 8) convert(std::integral_constant<std::size_t, 8>{});
    if (d + 4 <= n) {
        convert(std::integral_constant<std::size_t, 4>{});
        d += 4;
    }
}

// half_to_float on L lanes at once, the same bit arithmetic (the comparison a lane mask).
template <std::size_t L>
FASTEMBED_ALWAYS_INLINE void half_lanes_to_float(const std::uint16_t* src, float* dst) {
    using Words = typename Lanes<L>::words;
    using Floats = typename Lanes<L>::floats;
    typename Lanes<L>::halves halves;
    std::memcpy(&halves, src, sizeof halves);
    const Words word = __builtin_convertvector(halves, Words) << 16;
    const Words sign = word & 0x80000000u;
    const Words doubled = word + word;
    const Words normal_bits = (doubled >> 4) + (std::uint32_t{0xE0} << 23);
    const Words subnormal_bits = (doubled >> 17) | (std::uint32_t{126} << 23);
    Floats normal;
    Floats subnormal;
    std::memcpy(&normal, &normal_bits, sizeof normal);
    std::memcpy(&subnormal, &subnormal_bits, sizeof subnormal);
    normal = normal * 0x1.0p-112f;
    subnormal = subnormal - 0.5f;
    Words normal_magnitude;
    Words subnormal_magnitude;
    std::memcpy(&normal_magnitude, &normal, sizeof normal);
    std::memcpy(&subnormal_magnitude, &subnormal, sizeof subnormal);
    const auto small = reinterpret_cast<Words>(doubled < (std::uint32_t{1} << 27));  // all ones
    const Words bits = sign | (small & subnormal_magnitude) | (~small & normal_magnitude);
    std::memcpy(dst, &bits, sizeof bits);
}

// float_to_half on L lanes at once (the comparisons lane masks).
template <std::size_t L>
FASTEMBED_ALWAYS_INLINE void float_lanes_to_half(const float* src, std::uint16_t* dst) {
    using Words = typename Lanes<L>::words;
    using Floats = typename Lanes<L>::floats;
    Words word;
    std::memcpy(&word, src, sizeof word);
    const Words magnitude_bits = word & 0x7FFFFFFFu;
    Floats base;
    std::memcpy(&base, &magnitude_bits, sizeof base);
    base = (base * 0x1.0p+112f) * 0x1.0p-110f;
    const Words doubled = word + word;
    const Words sign = word & 0x80000000u;
    Words bias = doubled & 0xFF000000u;
    const auto small = reinterpret_cast<Words>(bias < 0x71000000u);
    bias = (small & 0x71000000u) | (~small & bias);
    const Words offset_bits = (bias >> 1) + 0x07800000u;
    Floats offset;
    std::memcpy(&offset, &offset_bits, sizeof offset);
    base = offset + base;
    Words bits;
    std::memcpy(&bits, &base, sizeof bits);
    const Words finite = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
    const Words nan = 0x7E00u | ((word >> 13) & 0x01FFu);
    const auto is_nan = reinterpret_cast<Words>(doubled > 0xFF000000u);
    const Words half = (sign >> 16) | (is_nan & nan) | (~is_nan & finite);
    const auto halves = __builtin_convertvector(half, typename Lanes<L>::halves);
    std::memcpy(dst, &halves, sizeof halves);
}

// float_to_bfloat16 on L lanes at once.
template <std::size_t L>
FASTEMBED_ALWAYS_INLINE void float_lanes_to_bfloat16(const float* src, std::uint16_t* dst) {
    using Words = typename Lanes<L>::words;
    Words word;
    std::memcpy(&word, src, sizeof word);
    const Words rounded = (word + 0x7FFFu + ((word >> 16) & 1u)) >> 16;
    const auto is_nan = reinterpret_cast<Words>((word & 0x7FFFFFFFu) > 0x7F800000u);
    const Words bits = (is_nan & ((word >> 16) | 0x40u)) | (~is_nan & rounded);
    const auto halves = __builtin_convertvector(bits, typename Lanes<L>::halves);
    std::memcpy(dst, &halves, sizeof halves);
}

// bfloat16_to_float on L lanes at once.
template <std::size_t L>
FASTEMBED_ALWAYS_INLINE void bfloat16_lanes_to_float(const std::uint16_t* src, float* dst) {
    using Words = typename Lanes<L>::words;
    typename Lanes<L>::halves halves;
    std::memcpy(&halves, src, sizeof halves);
    const Words bits = __builtin_convertvector(halves, Words) << 16;
    std::memcpy(dst, &bits, sizeof bits);
}
#endif

#ifdef FASTEMBED_AVX2_LANES
// 8 float16 -> float32 (vcvtph2ps: exact, as half_to_float) and 8 bfloat16 -> float32.
FASTEMBED_AVX2_F16C inline void widen_lanes_avx2(const Float16* src, float* dst) {
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
}

// bfloat16: the 16 bytes loaded into both halves of a register (a load, no shuffle port), then
// one byte shuffle puts elements 0-3 and 4-7 into the high halves of the words of each half:
// one instruction after the load, where zero-extending and shifting took two.
FASTEMBED_AVX2_F16C inline void widen_lanes_avx2(const BFloat16* src, float* dst) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256i to_high_halves = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,
                                                    -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_shuffle_epi8(both, to_high_halves));
}

// 8 float32 -> float16 (vcvtps2ph, to nearest even: the bits of float_to_half).
FASTEMBED_AVX2_F16C inline void narrow_lanes_avx2(const float* src, Float16* dst) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src), _MM_FROUND_TO_NEAREST_INT));
}

// widen_lanes_avx2 for 16 lanes, one register of the AVX-512 copy (two 8-lane stores read back
// as one 64-byte vector would stall store forwarding on every row).
FASTEMBED_AVX512 inline void widen_lanes_avx512(const Float16* src, float* dst) {
    const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    _mm512_storeu_ps(dst, _mm512_maskz_cvtph_ps(kAllLanes, halves));
}

FASTEMBED_AVX512 inline void widen_lanes_avx512(const BFloat16* src, float* dst) {
    const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m512i words = _mm512_maskz_cvtepu16_epi32(kAllLanes, halves);
    _mm512_storeu_si512(dst, _mm512_maskz_slli_epi32(kAllLanes, words, 16));
}
#endif

}  // namespace detail

// The arithmetic of storage type S: `type`, widen(S) and narrow(type) (nearest, ties to even).
template <class S>
struct Element {
    using type = S;
    static S widen(S value) { return value; }
    static S narrow(S value) { return value; }
};

template <>
struct Element<Float16> {
    using type = float;
    static float widen(Float16 value) { return detail::half_to_float(value.bits); }
    static Float16 narrow(float value) { return Float16{detail::float_to_half(value)}; }
};

template <>
struct Element<BFloat16> {
    using type = float;
    static float widen(BFloat16 value) { return detail::bfloat16_to_float(value.bits); }
    static BFloat16 narrow(float value) { return BFloat16{detail::float_to_bfloat16(value)}; }
};

template <class S>
using accumulator_t = typename Element<S>::type;

// Whether S is stored in fewer bits than it is computed in.
template <class S>
inline constexpr bool is_reduced_precision = sizeof(S) < sizeof(accumulator_t<S>);

// dst[d] = widen(src[d]) for d < n: float16 and bfloat16 in groups of 16, 8 and 4 lanes
// (lanes.hpp), the rest element by element; the same bits either way (widening is exact).
// Always inlined: the pooled kernel's row reader (bag.hpp) calls it for each vector of a block.
// Isa::avx2 and Isa::avx512 (only in a kernel's copies for them) widen groups of 8 with AVX2 +
// F16C, Isa::avx512 first groups of 16 with AVX-512.
template <Isa isa = Isa::baseline, class S>
FASTEMBED_ALWAYS_INLINE void widen_row(accumulator_t<S>* __restrict dst, const S* __restrict src,
                                       std::size_t n) {
    std::size_t d = 0;
#ifdef FASTEMBED_AVX2_LANES
    if constexpr (isa == Isa::avx512 && is_reduced_precision<S>) {
        for (; d + 16 <= n; d += 16) detail::widen_lanes_avx512(src + d, dst + d);
    }
    if constexpr (isa >= Isa::avx2 && is_reduced_precision<S>) {
        for (; d + 8 <= n; d += 8) detail::widen_lanes_avx2(src + d, dst + d);
    }
#endif
#ifdef FASTEMBED_LANE_VECTORS
    if constexpr (is_reduced_precision<S>) {
        static_assert(sizeof(S) == sizeof(std::uint16_t), "float16 / bfloat16 bits");
        const auto* bits = reinterpret_cast<const std::uint16_t*>(src);
        detail::over_lane_groups(d, n, [&](auto lanes) __attribute__((always_inline)) {
            constexpr std::size_t L = decltype(lanes)::value;
            if constexpr (std::is_same_v<S, Float16>) {
                detail::half_lanes_to_float<L>(bits + d, dst + d);
            } else {
                detail::bfloat16_lanes_to_float<L>(bits + d, dst + d);
            }
        });
    }
#endif
    for (; d < n; ++d) dst[d] = Element<S>::widen(src[d]);
}

// dst[d] = narrow(src[d]) for d < n, in groups of lanes as widen_row; the same bits either way.
// Always inlined: the pooled kernel stores each block of a bag's result through it.
template <Isa isa = Isa::baseline, class S>
FASTEMBED_ALWAYS_INLINE void narrow_row(S* __restrict dst, const accumulator_t<S>* __restrict src,
                                        std::size_t n) {
    std::size_t d = 0;
#ifdef FASTEMBED_AVX2_LANES
    if constexpr (isa >= Isa::avx2 && std::is_same_v<S, Float16>) {
        for (; d + 8 <= n; d += 8) detail::narrow_lanes_avx2(src + d, dst + d);
    }
#endif
#ifdef FASTEMBED_LANE_VECTORS
    if constexpr (is_reduced_precision<S>) {
        static_assert(sizeof(S) == sizeof(std::uint16_t), "float16 / bfloat16 bits");
        auto* bits = reinterpret_cast<std::uint16_t*>(dst);
        detail::over_lane_groups(d, n, [&](auto lanes) __attribute__((always_inline)) {
            constexpr std::size_t L = decltype(lanes)::value;
            if constexpr (std::is_same_v<S, Float16>) {
                detail::float_lanes_to_half<L>(src + d, bits + d);
            } else {
                detail::float_lanes_to_bfloat16<L>(src + d, bits + d);
            }
        });
    }
#endif
    for (; d < n; ++d) dst[d] = Element<S>::narrow(src[d]);
}

// dst[d] = src[d] rounded to Out: through `writer` (which may stream) when Out is its own
// arithmetic type, element by element otherwise.
template <class Out>
inline void write_row(const RowWriter& writer, Out* dst, const accumulator_t<Out>* src, std::size_t n) {
    if constexpr (is_reduced_precision<Out>) {
        narrow_row(dst, src, n);
    } else {
        writer.copy(dst, src, n * sizeof(Out));
    }
}

// dst[d] += src[d], the sum rounded to Out once.
template <class Out>
inline void add_into_row(Out* __restrict dst, const accumulator_t<Out>* __restrict src, std::size_t n) {
    if constexpr (is_reduced_precision<Out>) {
        for (std::size_t d = 0; d < n; ++d) dst[d] = Element<Out>::narrow(Element<Out>::widen(dst[d]) + src[d]);
    } else {
        add_row(dst, src, n);
    }
}

// Counter-based random bits: a SplitMix64 finaliser over the key, so any element's bits can be
// drawn without drawing the ones before it.
inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// How an update writes its new values into a table of storage type S: to nearest (ties to
// even), or stochastically, keyed by (seed, step, row, element).
struct Rounding {
    bool stochastic = false;
    std::uint64_t seed = 0;
    std::uint64_t step = 0;

    // The key of one row's stream; elements draw from it by their index.
    std::uint64_t row_key(std::uint64_t row) const {
        return mix64(mix64(mix64(seed) ^ step) ^ row);
    }
};

// A uniform in [0, 1) with 24 random bits, for element `element` of the row keyed `key`.
inline float uniform_from(std::uint64_t key, std::size_t element) {
    const std::uint64_t bits = mix64(key + 0x9E3779B97F4A7C15ull * (element + 1));
    return static_cast<float>(bits >> 40) * 0x1.0p-24f;
}

// `value` rounded stochastically to S: the neighbour toward zero or away from it, the latter
// with probability (|value| - |toward|) / (|away| - |toward|), so the rounding is unbiased.
// Values that round to infinity (or are NaN) round as to nearest.
template <class S>
inline S narrow_stochastic(float value, float uniform) {
    const S nearest = Element<S>::narrow(value);
    const float magnitude = std::fabs(value);
    const float nearest_magnitude = std::fabs(Element<S>::widen(nearest));
    if (!(nearest_magnitude <= 3.0e38f) || nearest_magnitude == magnitude) return nearest;
    const std::uint16_t sign = nearest.bits & 0x8000u;
    std::uint16_t toward = nearest.bits & 0x7FFFu;  // magnitude bits: consecutive values
    if (nearest_magnitude > magnitude) --toward;
    const auto away = static_cast<std::uint16_t>(toward + 1);
    const float low = Element<S>::widen(S{toward});
    const float high = Element<S>::widen(S{away});
    const bool up = uniform * (high - low) < magnitude - low;
    return S{static_cast<std::uint16_t>(sign | (up ? away : toward))};
}

// Writes row `row`'s new values (computed in the accumulator type) into a table of storage S.
template <class S>
class RowRounder {
  public:
    RowRounder(const Rounding& rounding, std::uint64_t row)
        : stochastic_(is_reduced_precision<S> && rounding.stochastic),
          key_(stochastic_ ? rounding.row_key(row) : 0) {}

    S operator()(accumulator_t<S> value, std::size_t element) const {
        if constexpr (is_reduced_precision<S>) {
            if (stochastic_) return narrow_stochastic<S>(value, uniform_from(key_, element));
        }
        (void)element;
        return Element<S>::narrow(value);
    }

  private:
    bool stochastic_;
    std::uint64_t key_;
};

}  // namespace fastembed
