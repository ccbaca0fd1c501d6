// Row-wise quantized tables in FBGEMM's byte layout, so that PyTorch's prepacked tables
// (torch.ops.quantized.embedding_bag_byte_prepack / embedding_bag_4bit_prepack) are read as they
// are, and tables packed here are byte-identical to theirs.
//
//   8-bit: D code bytes, then float32 scale and float32 bias      (D + 8 bytes per row)
//   4-bit: D / 2 bytes of two codes each, the even column in the low nibble, then float16
//          scale and float16 bias                                  (D / 2 + 4 bytes per row)
//
// Element d of a row is code[d] * scale + bias in one fused multiply-add, rounded once as in
// FBGEMM's kernels; every copy of a loop computes it exactly (lanes.hpp), so the same bits on
// every CPU. Packing follows FBGEMM's reference rounding:
//   8-bit: bias = min, scale = (max - min) / 255, code = rint((x - min) * 255 / (max - min + 1e-8))
//   4-bit: bias = min rounded to float16, scale = (max - bias) / 15 rounded to float16 (1 when
//          that is 0 or its inverse overflows), code = clamp(rint((x - bias) / scale), 0, 15)
// so each element is within half a quantum (scale / 2) of its value, plus 1e-8 for 8-bit (the
// guard in the inverse) and the float16 rounding of the bias for 4-bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/bag.hpp"
#include "kernels/half.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// A NaN or infinity in a table to quantize: the first one in row-major order.
class NonFiniteValue : public std::domain_error {
  public:
    NonFiniteValue(std::size_t row, std::size_t column, float value)
        : std::domain_error("weight[" + std::to_string(row) + ", " + std::to_string(column) +
                            "] = " + std::to_string(value) + " is not finite"),
          row(row),
          column(column),
          value(value) {}

    std::size_t row;
    std::size_t column;
    float value;
};

// Bytes of one packed row: the codes, then scale and bias.
inline std::size_t packed_row_bytes(unsigned bits, std::size_t dim) {
    return bits == 8 ? dim + 2 * sizeof(float) : dim / 2 + 2 * sizeof(Float16);
}

#ifdef FASTEMBED_LANE_VECTORS
namespace detail {

// 4-bit codes two to a byte, the even column in the low nibble, for L = sizeof...(J) lanes:
// pairs[j] = codes[2j] | codes[2j + 1] << 4, the codes being the lanes of first:second...
template <class Ints, std::size_t... J>
FASTEMBED_ALWAYS_INLINE void nibble_pairs(const Ints& first, const Ints& second, Ints& pairs,
                                          std::index_sequence<J...>) {
    pairs = __builtin_shufflevector(first, second, (2 * J)...) |
            (__builtin_shufflevector(first, second, (2 * J + 1)...) << 4);
}

// ...and back: codes[j] = the low nibble of pairs[j / 2] for even j, the high one for odd j.
template <class Pairs, class Ints, std::size_t... J>
FASTEMBED_ALWAYS_INLINE void split_nibbles(const Pairs& pairs, Ints& codes, std::index_sequence<J...>) {
    codes = __builtin_convertvector(__builtin_shufflevector(pairs, pairs, (J / 2)...), Ints);
    codes = (codes >> Ints{static_cast<int>(J % 2 * 4)...}) & 0x0F;
}

}  // namespace detail
#endif

// Reads the rows of a packed table (checked by the caller: V rows of packed_row_bytes(Bits, D)).
template <unsigned Bits>
class QuantizedRows {
    static_assert(Bits == 8 || Bits == 4, "FBGEMM's row-wise layouts are 8-bit and 4-bit");

  public:
    using output_type = float;
    using value_type = float;

    QuantizedRows(const std::uint8_t* packed, std::size_t num_rows, std::size_t dim)
        : packed_(packed), num_rows_(num_rows), dim_(dim), stride_(packed_row_bytes(Bits, dim)) {}

    std::size_t num_rows() const { return num_rows_; }
    std::size_t dim() const { return dim_; }
    const void* row_address(std::size_t id) const { return packed_ + id * stride_; }
    std::size_t row_bytes() const { return stride_; }

    // The row's scale and bias, from the bytes after its codes.
    void scale_bias(const std::uint8_t* row, float& scale, float& bias) const {
        const std::uint8_t* tail = row + code_bytes();
        if constexpr (Bits == 8) {
            std::memcpy(&scale, tail, sizeof(float));
            std::memcpy(&bias, tail + sizeof(float), sizeof(float));
        } else {
            std::uint16_t halves[2];
            std::memcpy(halves, tail, sizeof halves);
            scale = detail::half_to_float(halves[0]);
            bias = detail::half_to_float(halves[1]);
        }
    }

    // Row `id` from column `col` on (even for 4-bit: D is): its codes from there, its scale and
    // bias (for 4-bit widened by F16C in the AVX2 and AVX-512 copies). The row reader's step
    // once per row (bag.hpp).
    struct row_type {
        const std::uint8_t* codes;
        float scale;
        float bias;
    };
    template <Isa isa = Isa::baseline>
    FASTEMBED_ALWAYS_INLINE row_type row_at(std::size_t id, std::size_t col) const {
        const auto* row = static_cast<const std::uint8_t*>(row_address(id));
        row_type result{row + col * Bits / 8, 0.0f, 0.0f};
#ifdef FASTEMBED_AVX2_LANES
        if constexpr (isa >= Isa::avx2 && Bits == 4) {
            half_scale_bias_f16c(row + code_bytes(), result.scale, result.bias);
        } else {
            scale_bias(row, result.scale, result.bias);
        }
#else
        scale_bias(row, result.scale, result.bias);
#endif
        return result;
    }

    // values[j] = element col + offset + j of `row` (row_at(id, col)), fma(code, scale, bias),
    // for j < width: the row dequantized in registers. A row reader of the pooled kernel (bag.hpp),
    // which calls it with a constant width per column block; for 4-bit, offset and width are
    // even.
    template <Isa isa = Isa::baseline>
    FASTEMBED_ALWAYS_INLINE void load(const row_type& row, std::size_t offset, std::size_t width,
                                      float* values) const {
        codes_times<isa, false>(row.codes, offset, width, row.scale, row.bias, values);
    }

    // sums[j] = fma(code col + offset + j of `row`, scale, sums[j]), for j < width: a sum's step
    // with the row's bias left out (the pooled kernel adds a bag's biases once, at its end):
    // per vector the codes' widening, their conversion and an FMA, where load and an addition
    // take one instruction more.
    template <Isa isa = Isa::baseline>
    FASTEMBED_ALWAYS_INLINE void add_codes_times(const row_type& row, std::size_t offset, std::size_t width,
                                                 float scale, float* sums) const {
        codes_times<isa, true>(row.codes, offset, width, scale, 0.0f, sums);
    }

    // A gather's row: the whole row dequantized into dst, in the widest copy this CPU runs (its
    // FMA instruction; the baseline's std::fma is a library call on x86-64).
    void copy(const RowWriter&, float* dst, std::uint64_t id) const {
        on_this_cpu([&](auto isa) FASTEMBED_INLINE_LAMBDA {
            constexpr Isa kIsa = decltype(isa)::value;
            load<kIsa>(row_at<kIsa>(id, 0), 0, dim_, dst);
        });
    }

  private:
    // values[j] = fma(code col + offset + j, scale, addend), j < width, where the addend is
    // values[j] itself (Accumulate) or `bias`: load's and add_codes_times's one loop.
    template <Isa isa, bool Accumulate>
    FASTEMBED_ALWAYS_INLINE static void codes_times(const std::uint8_t* codes, std::size_t offset,
                                                    std::size_t width, float scale, float bias,
                                                    float* values) {
        std::size_t j = 0;
#ifdef FASTEMBED_AVX2_LANES
        if constexpr (isa == Isa::avx512) {
            for (; j + 16 <= width; j += 16) {
                codes_times_avx512<Accumulate>(codes, offset + j, scale, bias, values + j);
            }
        }
        if constexpr (isa >= Isa::avx2) {
            for (; j + 8 <= width; j += 8) {
                codes_times_avx2<Accumulate>(codes, offset + j, scale, bias, values + j);
            }
        }
#endif
#ifdef FASTEMBED_LANE_VECTORS
        detail::over_lane_groups(j, width, [&](auto lanes) __attribute__((always_inline)) {
            codes_times_lanes<decltype(lanes)::value, Accumulate>(codes, offset + j, scale, bias, values + j);
        });
#endif
        auto element = [&](int code, float* value) __attribute__((always_inline)) {
            *value = std::fma(static_cast<float>(code), scale, Accumulate ? *value : bias);
        };
        if constexpr (Bits == 8) {
            for (; j < width; ++j) element(codes[offset + j], values + j);
        } else {
            for (; j < width; j += 2) {
                const std::uint8_t pair = codes[(offset + j) / 2];
                element(pair & 0x0F, values + j);
                element(pair >> 4, values + j + 1);
            }
        }
    }

#ifdef FASTEMBED_AVX2_LANES
    // The 4-bit scale and bias (two float16 after the codes) widened by one vcvtph2ps: exact, as
    // scale_bias's half_to_float, in one instruction instead of two dozen per row.
    FASTEMBED_AVX2_F16C static void half_scale_bias_f16c(const std::uint8_t* tail, float& scale, float& bias) {
        std::int32_t halves;
        std::memcpy(&halves, tail, sizeof halves);
        const __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));
        scale = _mm_cvtss_f32(both);
        bias = _mm_cvtss_f32(_mm_shuffle_ps(both, both, 1));
    }

    // codes_times for 8 lanes with AVX2: the codes zero-extended to int32 lanes in one
    // instruction (4-bit: each pair byte doubled first, then shifted by 0 or 4 and masked).
    template <bool Accumulate>
    FASTEMBED_AVX2_FMA static void codes_times_avx2(const std::uint8_t* row, std::size_t col, float scale,
                                                    float bias, float* values) {
        __m256i codes;
        if constexpr (Bits == 8) {
            codes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + col)));
        } else {
            std::int32_t pairs;
            std::memcpy(&pairs, row + col / 2, sizeof pairs);
            const __m128i bytes = _mm_cvtsi32_si128(pairs);
            codes = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));
            codes = _mm256_and_si256(_mm256_srlv_epi32(codes, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)),
                                     _mm256_set1_epi32(0x0F));
        }
        const __m256 addend = Accumulate ? _mm256_loadu_ps(values) : _mm256_set1_ps(bias);
        _mm256_storeu_ps(values, _mm256_fmadd_ps(_mm256_cvtepi32_ps(codes), _mm256_set1_ps(scale), addend));
    }

    // The same for 16 lanes, one register of the AVX-512 copy (lanes.hpp: kAllLanes). GCC
    // 12's vector extensions made this copy 5x slower than AVX2 here, so intrinsics it is.
    template <bool Accumulate>
    FASTEMBED_AVX512 static void codes_times_avx512(const std::uint8_t* row, std::size_t col, float scale,
                                                    float bias, float* values) {
        __m512i codes;
        if constexpr (Bits == 8) {
            const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + col));
            codes = _mm512_maskz_cvtepu8_epi32(kAllLanes, bytes);
        } else {
            const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + col / 2));
            codes = _mm512_maskz_cvtepu8_epi32(kAllLanes, _mm_unpacklo_epi8(bytes, bytes));
            const __m512i shifts = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
            codes = _mm512_maskz_srlv_epi32(kAllLanes, codes, shifts);
            codes = _mm512_and_si512(codes, _mm512_set1_epi32(0x0F));
        }
        const __m512 addend = Accumulate ? _mm512_loadu_ps(values) : _mm512_set1_ps(bias);
        const __m512 floats = _mm512_maskz_cvtepi32_ps(kAllLanes, codes);
        _mm512_storeu_ps(values, _mm512_fmadd_ps(floats, _mm512_set1_ps(scale), addend));
    }
#endif

#ifdef FASTEMBED_LANE_VECTORS
    // codes_times for L lanes: the codes widened to int32 lanes (4-bit: each pair byte twice,
    // shifted by 0 and 4 and masked), then one std::fma each (the vector extensions have no
    // fused multiply-add).
    template <std::size_t L, bool Accumulate>
    FASTEMBED_ALWAYS_INLINE static void codes_times_lanes(const std::uint8_t* row, std::size_t col, float scale,
                                                          float bias, float* values) {
        using Ints = typename Lanes<L>::ints;
        Ints codes;
        if constexpr (Bits == 8) {
            typename Lanes<L>::bytes bytes;
            std::memcpy(&bytes, row + col, sizeof bytes);
            codes = __builtin_convertvector(bytes, Ints);
        } else {
            typename Lanes<L>::nibble_pairs pairs;
            std::memcpy(&pairs, row + col / 2, sizeof pairs);
            detail::split_nibbles(pairs, codes, std::make_index_sequence<L>{});
        }
        std::int32_t lanes[L];
        std::memcpy(lanes, &codes, sizeof lanes);
        for (std::size_t j = 0; j < L; ++j) {
            values[j] = std::fma(static_cast<float>(lanes[j]), scale, Accumulate ? values[j] : bias);
        }
    }
#endif

    std::size_t code_bytes() const { return Bits == 8 ? dim_ : dim_ / 2; }

    const std::uint8_t* packed_;
    std::size_t num_rows_;
    std::size_t dim_;
    std::size_t stride_;
};

// The whole table dequantized into `out` (num_rows x dim float32), rows in parallel.
template <unsigned Bits>
void dequantize_all(const QuantizedRows<Bits>& table, float* out) {
    const std::size_t num_embeddings = table.num_rows();
    const std::size_t dim = table.dim();
    const RowWriter unused(0, 0);
    parallel_ranges(num_embeddings, threads_for_bytes(num_embeddings * (table.row_bytes() + dim * sizeof(float))),
                    [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) table.copy(unused, out + r * dim, r);
    });
}

namespace detail {

// rint(value) clamped to [0, top]; NaN (from a range that overflows float32) gives 0. Adding
// and taking away 1.5 * 2^23 rounds to nearest even as lrintf does, without a libm call.
inline std::uint8_t clamped_code(float value, float top) {
    float v = value > 0.0f ? value : 0.0f;
    v = v < top ? v : top;
    return static_cast<std::uint8_t>(static_cast<int>((v + 0x1.8p23f) - 0x1.8p23f));
}

// Packing is compute-bound (a 64-wide row is read once, ~300 SSE2 instructions), so it runs in
// groups of 4 lanes, one SSE2 register, in the baseline copy (GCC 12 splits the selects of
// 8-lane vectors into scalar code there) and of 8 in the AVX2 copy (FASTEMBED_AVX2_CLONE).
// Both do the same operations on each element, so they write the same bytes.
template <Isa isa>
inline constexpr std::size_t kPackLanes = isa >= Isa::avx2 ? 8 : 4;

#ifdef FASTEMBED_AVX2_LANES
// clamp_and_round<8, Clamp> in the AVX2 copy.
template <bool Clamp>
FASTEMBED_AVX2_F16C inline void clamp_and_round_avx2(const Lanes<8>::floats& values, float top,
                                                     Lanes<8>::ints& codes) {
    __m256 v;
    std::memcpy(&v, &values, sizeof v);
    if constexpr (Clamp) v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(top));
    const __m256i rounded = _mm256_cvtps_epi32(v);
    std::memcpy(&codes, &rounded, sizeof codes);
}
#endif

#ifdef FASTEMBED_LANE_VECTORS
// codes = values clamped to [0, top] (if Clamp; NaN gives 0) and rounded to the nearest integer,
// ties to even: clamped_code for L lanes. On x86, maxps, minps (whose operand order makes them
// clamped_code's selects exactly) and one cvtps2dq, which rounds by the MXCSR mode (to nearest
// even unless a program changes it; clamped_code's trick relies on that mode as well) and
// gives INT_MIN for an unclamped NaN.
template <std::size_t L, bool Clamp>
FASTEMBED_ALWAYS_INLINE void clamp_and_round(const typename Lanes<L>::floats& values, float top,
                                             typename Lanes<L>::ints& codes) {
#ifdef FASTEMBED_HAVE_SSE2
    if constexpr (L == 4) {
        __m128 v;
        std::memcpy(&v, &values, sizeof v);
        if constexpr (Clamp) v = _mm_min_ps(_mm_max_ps(v, _mm_setzero_ps()), _mm_set1_ps(top));
        const __m128i rounded = _mm_cvtps_epi32(v);
        std::memcpy(&codes, &rounded, sizeof codes);
    } else {
        clamp_and_round_avx2<Clamp>(values, top, codes);
    }
#else
    static_assert(Clamp, "lanes are narrowed modulo 256 without SSE2's saturating packs");
    using Floats = typename Lanes<L>::floats;
    const Floats zero = {};
    const Floats tops = zero + top;
    Floats v = values > zero ? values : zero;
    v = v < tops ? v : tops;
    codes = __builtin_convertvector((v + 0x1.8p23f) - 0x1.8p23f, typename Lanes<L>::ints);
#endif
}

// codes[j] = clamped_code((x[j] - low) * inverse, 2^Bits - 1) for L lanes. Where store_codes
// narrows with SSE2's saturating packs, 8-bit codes skip the clamp: rounding first and
// saturating to [0, 255] gives the same codes, NaN's INT_MIN included (it saturates to 0), as
// (x - low) * inverse never exceeds 255.5 (low is the row's minimum, inverse 255 / its range).
template <unsigned Bits, std::size_t L>
FASTEMBED_ALWAYS_INLINE void clamped_codes(const float* x, float low, float inverse, typename Lanes<L>::ints& codes) {
    typename Lanes<L>::floats v;
    std::memcpy(&v, x, sizeof v);
    v = (v - low) * inverse;
#ifdef FASTEMBED_HAVE_SSE2
    constexpr bool kClamp = Bits == 4;
#else
    constexpr bool kClamp = true;
#endif
    clamp_and_round<L, kClamp>(v, static_cast<float>((1u << Bits) - 1), codes);
}

// out[0, 2L) = the codes of `first` then `second` (each in [0, 255]) as bytes: SSE2's saturating
// packs (GCC 12 narrows vector lanes one by one).
template <std::size_t L>
FASTEMBED_ALWAYS_INLINE void store_codes(const typename Lanes<L>::ints& first,
                                         const typename Lanes<L>::ints& second, std::uint8_t* out) {
#ifdef FASTEMBED_HAVE_SSE2
    __m128i quads[L / 2];
    std::memcpy(quads, &first, sizeof first);
    std::memcpy(quads + L / 4, &second, sizeof second);
    if constexpr (L == 4) {
        const __m128i words = _mm_packs_epi32(quads[0], quads[1]);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(words, words));
    } else {
        const __m128i bytes =
            _mm_packus_epi16(_mm_packs_epi32(quads[0], quads[1]), _mm_packs_epi32(quads[2], quads[3]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
    }
#else
    const auto low = __builtin_convertvector(first, typename Lanes<L>::bytes);
    const auto high = __builtin_convertvector(second, typename Lanes<L>::bytes);
    std::memcpy(out, &low, sizeof low);
    std::memcpy(out + sizeof low, &high, sizeof high);
#endif
}

// swapped = v with lane j moved to lane j ^ Width.
template <std::size_t Width, class V, std::size_t... J>
FASTEMBED_ALWAYS_INLINE void swap_lanes(const V& v, V& swapped, std::index_sequence<J...>) {
    swapped = __builtin_shufflevector(v, v, (J ^ Width)...);
}
template <std::size_t Width, class V>
FASTEMBED_ALWAYS_INLINE void swap_lanes(const V& v, V& swapped) {
    swap_lanes<Width>(v, swapped, std::make_index_sequence<sizeof(V) / sizeof(v[0])>{});
}
#endif

#ifdef FASTEMBED_AVX2_LANES
FASTEMBED_AVX2_F16C inline std::uint16_t float_to_half_f16c(float value) {
    return static_cast<std::uint16_t>(_cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT));
}
FASTEMBED_AVX2_F16C inline float half_to_float_f16c(std::uint16_t half) { return _cvtsh_ss(half); }
#endif

// The 4-bit scale and bias are rounded to float16: in the AVX2 copy by F16C, one instruction
// each instead of two dozen, the bits of float_to_half / half_to_float (which match vcvtps2ph).
template <Isa isa>
FASTEMBED_ALWAYS_INLINE std::uint16_t to_half(float value) {
#ifdef FASTEMBED_AVX2_LANES
    if constexpr (isa >= Isa::avx2) return float_to_half_f16c(value);
#endif
    return float_to_half(value);
}
template <Isa isa>
FASTEMBED_ALWAYS_INLINE float from_half(std::uint16_t half) {
#ifdef FASTEMBED_AVX2_LANES
    if constexpr (isa >= Isa::avx2) return half_to_float_f16c(half);
#endif
    return half_to_float(half);
}

// A row's minimum and maximum, and whether all its elements are finite.
struct RowRange {
    float low;
    float high;
    bool finite;
};

// Min and max are computed kPackLanes<isa> lanes at a time where vector extensions exist (the
// same values as one by one), as are the codes below.
template <Isa isa>
FASTEMBED_ALWAYS_INLINE RowRange row_range(const float* __restrict x, std::size_t dim) {
    float low = dim == 0 ? 0.0f : x[0];
    float high = low;
    float probe = 0.0f;  // becomes NaN if any element is NaN or infinite (0 * inf is NaN)
    std::size_t d = 0;
#ifdef FASTEMBED_LANE_VECTORS
    constexpr std::size_t L = kPackLanes<isa>;
    using Floats = typename Lanes<L>::floats;
    if (dim >= L) {
        // Four independent minima, maxima and probes: one chain of dim / L dependent min
        // instructions per row would make packing latency-bound.
        constexpr std::size_t kChains = 4;
        Floats first;
        std::memcpy(&first, x, sizeof first);
        Floats lows[kChains];
        Floats highs[kChains];
        Floats probes[kChains] = {};
        for (std::size_t k = 0; k < kChains; ++k) lows[k] = highs[k] = first;
        auto take = [&](std::size_t k, const float* from) __attribute__((always_inline)) {
            Floats v;
            std::memcpy(&v, from, sizeof v);
            lows[k] = v < lows[k] ? v : lows[k];
            highs[k] = v > highs[k] ? v : highs[k];
            probes[k] += 0.0f * v;
        };
        for (; d + kChains * L <= dim; d += kChains * L) {
            for (std::size_t k = 0; k < kChains; ++k) take(k, x + d + k * L);
        }
        for (; d + L <= dim; d += L) take(0, x + d);
        for (std::size_t k = 1; k < kChains; ++k) {
            lows[0] = lows[k] < lows[0] ? lows[k] : lows[0];
            highs[0] = highs[k] > highs[0] ? highs[k] : highs[0];
            probes[0] += probes[k];
        }
        // Across lanes in log2(L) steps, each lane against the one `width` away.
        auto fold = [&](auto width) __attribute__((always_inline)) {
            Floats other;
            swap_lanes<decltype(width)::value>(lows[0], other);
            lows[0] = other < lows[0] ? other : lows[0];
            swap_lanes<decltype(width)::value>(highs[0], other);
            highs[0] = other > highs[0] ? other : highs[0];
            swap_lanes<decltype(width)::value>(probes[0], other);
            probes[0] += other;
        };
        if constexpr (L == 8) fold(std::integral_constant<std::size_t, 4>{});
        fold(std::integral_constant<std::size_t, 2>{});
        fold(std::integral_constant<std::size_t, 1>{});
        low = lows[0][0];
        high = highs[0][0];
        probe = probes[0][0];
    }
#endif
    for (; d < dim; ++d) {
        low = std::min(low, x[d]);
        high = std::max(high, x[d]);
        probe += 0.0f * x[d];
    }
    // Which of +0 and -0 a lane keeps depends on the lane count; +0 for both makes every copy of
    // the loop write the same bytes.
    return {low + 0.0f, high + 0.0f, probe == 0.0f};
}

// What packing a finite row takes besides its elements: the offset subtracted before scaling
// (the minimum; for 4-bit rounded to float16 first), the factor from there to codes, and the
// bytes stored after the codes (FBGEMM's scale and bias: float32 for 8-bit, float16 for 4-bit).
template <unsigned Bits>
struct RowQuantizer {
    float offset;
    float inverse;
    std::uint8_t tail[Bits == 8 ? 2 * sizeof(float) : 2 * sizeof(std::uint16_t)];
};

template <unsigned Bits, Isa isa>
FASTEMBED_ALWAYS_INLINE RowQuantizer<Bits> row_quantizer(const RowRange& row) {
    RowQuantizer<Bits> quantizer;
    if constexpr (Bits == 8) {
        const float range = row.high - row.low;
        const float scale = range / 255.0f;
        quantizer.offset = row.low;
        quantizer.inverse = 255.0f / (range + 1e-8f);
        std::memcpy(quantizer.tail, &scale, sizeof scale);
        std::memcpy(quantizer.tail + sizeof scale, &row.low, sizeof row.low);
    } else {
        const std::uint16_t bias_bits = to_half<isa>(row.low);
        const float bias = from_half<isa>(bias_bits);
        const float range = row.high - bias;
        float scale = from_half<isa>(to_half<isa>(range == 0.0f ? 1.0f : range / 15.0f));
        if (scale == 0.0f) scale = 1.0f;
        float inverse = 1.0f / scale;
        if (std::isinf(inverse)) {
            scale = 1.0f;
            inverse = 1.0f;
        }
        quantizer.offset = bias;
        quantizer.inverse = inverse;
        const std::uint16_t halves[2] = {to_half<isa>(scale), bias_bits};
        std::memcpy(quantizer.tail, halves, sizeof halves);
    }
    return quantizer;
}

#ifdef FASTEMBED_AVX2_LANES
// row_quantizer<4> of 8 rows at once in the AVX2 copy: the same operations lane by lane (F16C's
// vcvtps2ph is to_half's rounding), one division instruction for 8 rows instead of 8. 1M rows,
// 2 threads, Zen 4, the kernel alone, both forms in one process: D=32 8.3 -> 7.2 ms, D=64
// 11.1 -> 10.0, D=128 17.4 -> 16.4.
FASTEMBED_AVX2_F16C inline void row_quantizers_avx2(const RowRange* rows, RowQuantizer<4>* quantizers) {
    alignas(32) float lows[8];
    alignas(32) float highs[8];
    for (std::size_t k = 0; k < 8; ++k) {
        lows[k] = rows[k].low;
        highs[k] = rows[k].high;
    }
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 zero = _mm256_setzero_ps();
    const __m128i bias_bits = _mm256_cvtps_ph(_mm256_load_ps(lows), _MM_FROUND_TO_NEAREST_INT);
    const __m256 bias = _mm256_cvtph_ps(bias_bits);
    const __m256 range = _mm256_sub_ps(_mm256_load_ps(highs), bias);
    __m256 scale = _mm256_blendv_ps(_mm256_div_ps(range, _mm256_set1_ps(15.0f)), one,
                                    _mm256_cmp_ps(range, zero, _CMP_EQ_OQ));
    scale = _mm256_cvtph_ps(_mm256_cvtps_ph(scale, _MM_FROUND_TO_NEAREST_INT));
    scale = _mm256_blendv_ps(scale, one, _mm256_cmp_ps(scale, zero, _CMP_EQ_OQ));
    __m256 inverse = _mm256_div_ps(one, scale);
    const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), inverse);
    const __m256 infinite = _mm256_cmp_ps(magnitude, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
    scale = _mm256_blendv_ps(scale, one, infinite);
    inverse = _mm256_blendv_ps(inverse, one, infinite);
    alignas(32) float biases[8];
    alignas(32) float inverses[8];
    alignas(16) std::uint16_t scale_halves[8];
    alignas(16) std::uint16_t bias_halves[8];
    _mm256_store_ps(biases, bias);
    _mm256_store_ps(inverses, inverse);
    _mm_store_si128(reinterpret_cast<__m128i*>(scale_halves), _mm256_cvtps_ph(scale, _MM_FROUND_TO_NEAREST_INT));
    _mm_store_si128(reinterpret_cast<__m128i*>(bias_halves), bias_bits);
    for (std::size_t k = 0; k < 8; ++k) {
        quantizers[k].offset = biases[k];
        quantizers[k].inverse = inverses[k];
        const std::uint16_t halves[2] = {scale_halves[k], bias_halves[k]};
        std::memcpy(quantizers[k].tail, halves, sizeof halves);
    }
}
#endif

// The quantizers of rows[0, count) up to the first that is not finite: returns its index (its
// quantizer and the later ones unset), or count.
template <unsigned Bits, Isa isa>
FASTEMBED_ALWAYS_INLINE std::size_t row_quantizers(const RowRange* rows, std::size_t count,
                                                   RowQuantizer<Bits>* quantizers) {
    std::size_t finite = 0;
    while (finite < count && rows[finite].finite) ++finite;
#ifdef FASTEMBED_AVX2_LANES
    if constexpr (Bits == 4 && isa >= Isa::avx2) {
        if (finite == 8) {
            row_quantizers_avx2(rows, quantizers);
            return finite;
        }
    }
#endif
    for (std::size_t k = 0; k < finite; ++k) quantizers[k] = row_quantizer<Bits, isa>(rows[k]);
    return finite;
}

// Writes a finite row's codes and then the quantizer's tail.
template <unsigned Bits, Isa isa>
FASTEMBED_ALWAYS_INLINE void pack_codes(const float* __restrict x, std::size_t dim,
                                        const RowQuantizer<Bits>& quantizer, std::uint8_t* __restrict out) {
    const float offset = quantizer.offset;
    const float inverse = quantizer.inverse;
#ifdef FASTEMBED_LANE_VECTORS
    constexpr std::size_t L = kPackLanes<isa>;
    using Ints = typename Lanes<L>::ints;
#endif
    if constexpr (Bits == 8) {
        std::size_t d = 0;
#ifdef FASTEMBED_LANE_VECTORS
        for (; d + 2 * L <= dim; d += 2 * L) {
            Ints first;
            Ints second;
            clamped_codes<8, L>(x + d, offset, inverse, first);
            clamped_codes<8, L>(x + d + L, offset, inverse, second);
            store_codes<L>(first, second, out + d);
        }
#endif
        for (; d < dim; ++d) out[d] = clamped_code((x[d] - offset) * inverse, 255.0f);
        std::memcpy(out + dim, quantizer.tail, sizeof quantizer.tail);
    } else {
        std::size_t b = 0;
#ifdef FASTEMBED_LANE_VECTORS
        // The codes of the 2L elements at `from`, paired into L lanes of one byte's worth each.
        auto code_pairs = [&](const float* from, Ints& pairs) __attribute__((always_inline)) {
            Ints first;
            Ints second;
            clamped_codes<4, L>(from, offset, inverse, first);
            clamped_codes<4, L>(from + L, offset, inverse, second);
            nibble_pairs(first, second, pairs, std::make_index_sequence<L>{});
        };
        // 4L elements -> 2L bytes of two codes each
        for (; 2 * b + 4 * L <= dim; b += 2 * L) {
            Ints pairs[2];
            code_pairs(x + 2 * b, pairs[0]);
            code_pairs(x + 2 * b + 2 * L, pairs[1]);
            store_codes<L>(pairs[0], pairs[1], out + b);
        }
        // 2L elements -> L bytes, so that rows of 16 or 48 elements (AVX2) stay in vectors: one
        // by one, 1M rows of 16 took 2.5 times as long as rows of 32.
        for (; 2 * b + 2 * L <= dim; b += L) {
            Ints pairs;
            code_pairs(x + 2 * b, pairs);
            std::uint8_t bytes[2 * L];  // store_codes writes two vectors' bytes: the first are these
            store_codes<L>(pairs, pairs, bytes);
            std::memcpy(out + b, bytes, L);
        }
#endif
        for (; b < dim / 2; ++b) {
            const std::uint8_t even = clamped_code((x[2 * b] - offset) * inverse, 15.0f);
            const std::uint8_t odd = clamped_code((x[2 * b + 1] - offset) * inverse, 15.0f);
            out[b] = static_cast<std::uint8_t>(even | (odd << 4));
        }
        std::memcpy(out + dim / 2, quantizer.tail, sizeof quantizer.tail);
    }
}

// Rows packed as a group: first every row's range, then every row's quantizer, then every row's
// codes. A row's quantizer is a chain of dependent scalar steps (for 4-bit two divisions and
// two float16 roundings) that its codes wait for; packed one row after another, each chain
// stood between a row's range and its codes, and too few instructions followed for the next
// rows' chains to overlap it. In groups, one group's chains run side by side. 1M x 64 rows,
// 2 threads, Zen 4, the kernel alone with both forms in one process: 4-bit 16.7 ms one by one,
// 13.1 in groups of 2, 11.2 of 4, 11.0 of 8; 8-bit 8.6 -> 8.4 (bound by memory). Groups of 8
// against 4 at D=16 and 32: 2-10% faster. (8 is also the lane count of the AVX2 copy's 4-bit
// quantizers, row_quantizers_avx2, which a smaller group would never use.)
inline constexpr std::size_t kPackGroupRows = 8;

// Packs rows [begin, end) of `weight`; returns the first that holds a NaN or infinity (rows
// before it in its group are then left unwritten: the caller discards the output), or end.
template <unsigned Bits, Isa isa>
FASTEMBED_ALWAYS_INLINE std::size_t pack_rows(const float* weight, std::size_t dim, std::uint8_t* out,
                                              std::size_t begin, std::size_t end) {
    const std::size_t stride = packed_row_bytes(Bits, dim);
    for (std::size_t first = begin; first < end; first += kPackGroupRows) {
        const std::size_t rows = std::min(kPackGroupRows, end - first);
        RowRange ranges[kPackGroupRows];
        for (std::size_t k = 0; k < rows; ++k) ranges[k] = row_range<isa>(weight + (first + k) * dim, dim);
        RowQuantizer<Bits> quantizers[kPackGroupRows];
        const std::size_t finite = row_quantizers<Bits, isa>(ranges, rows, quantizers);
        if (finite < rows) return first + finite;
        for (std::size_t k = 0; k < rows; ++k) {
            pack_codes<Bits, isa>(weight + (first + k) * dim, dim, quantizers[k], out + (first + k) * stride);
        }
    }
    return end;
}

}  // namespace detail

// Packs a (num_embeddings, dim) float32 table into `out` (num_embeddings rows of
// packed_row_bytes(Bits, dim)), rows in parallel. A NaN or infinity throws NonFiniteValue (the
// first in row-major order); `out` is then partly written, so the caller passes fresh memory.
template <unsigned Bits>
void quantize_rows(const float* weight, std::size_t num_embeddings, std::size_t dim, std::uint8_t* out) {
    const std::size_t stride = packed_row_bytes(Bits, dim);
    const std::size_t threads = threads_for_bytes(num_embeddings * (dim * sizeof(float) + stride));
    std::vector<std::size_t> first_bad(parts_for(threads), num_embeddings);
    parallel_ranges(num_embeddings, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        const std::size_t bad = on_this_cpu([&](auto isa) FASTEMBED_INLINE_LAMBDA {
            return detail::pack_rows<Bits, decltype(isa)::value>(weight, dim, out, begin, end);
        });
        if (bad < end) first_bad[part] = bad;
    });
    const std::size_t bad_row = *std::min_element(first_bad.begin(), first_bad.end());
    if (bad_row == num_embeddings) return;
    const float* row = weight + bad_row * dim;
    const std::size_t column = static_cast<std::size_t>(
        std::find_if(row, row + dim, [](float x) { return !std::isfinite(x); }) - row);
    throw NonFiniteValue(bad_row, column, row[column]);
}

}  // namespace fastembed
