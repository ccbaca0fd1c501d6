// C++-only tests of reduced precision (no Python): float16 / bfloat16 conversions and
// rounding, 8- and 4-bit row-wise packing, and the pooled loop's row readers (float16,
// bfloat16, 8- and 4-bit rows) in every copy the CPU runs (baseline, AVX2, AVX-512), against
// element-by-element references. Built with -DFASTEMBED_KERNEL_TESTS=ON; with
// -DFASTEMBED_SANITIZE=ON they run under ASan + UBSan.
//
// Exit status: 0 when every CHECK held, 1 otherwise (each failure is printed with its case).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/bag.hpp"
#include "kernels/half.hpp"
#include "kernels/quantize.hpp"
#include "kernels/thread_pool.hpp"
#include "check.hpp"
#include "inputs.hpp"

namespace {

using namespace fastembed_tests;

// float16 / bfloat16: every bit pattern widens and narrows back to itself (NaN stays NaN),
// narrowing rounds ties to even and overflows to infinity, and stochastic rounding picks one of
// the two neighbours, the far one with probability equal to the distance.
template <class S>
void test_half_round_trip(const char* name) {
    current_case = name;
    using E = fastembed::Element<S>;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
        const float wide = E::widen(S{static_cast<std::uint16_t>(bits)});
        const std::uint16_t back = E::narrow(wide).bits;
        CHECK(std::isnan(wide) ? std::isnan(E::widen(S{back})) : back == bits);
    }
}

template <class T>
struct Tag {
    using type = T;
};

#ifdef FASTEMBED_AVX2_LANES
template <class S>
__attribute__((target("avx2,f16c"))) void narrow_row_avx2(S* dst, const float* src, std::size_t n) {
    fastembed::narrow_row<fastembed::Isa::avx2>(dst, src, n);
}
#endif

// Narrowing a row (lane groups of 8 and 4, then single elements; F16C in the AVX2 copy) gives
// each element's scalar bits, NaN payloads included: floats stepping through every exponent,
// and the neighbours of every float16 / bfloat16 value.
template <class S>
void test_narrow_lanes(const char* name) {
    current_case = name;
    using E = fastembed::Element<S>;
    std::vector<float> values;
    for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 4099) {
        values.push_back(fastembed::detail::bits_float(static_cast<std::uint32_t>(bits)));
    }
    for (std::uint32_t half = 0; half < 65536; ++half) {
        const std::uint32_t wide = fastembed::detail::float_bits(E::widen(S{static_cast<std::uint16_t>(half)}));
        for (std::uint32_t step : {0u, 1u, 0x1000u, 0x7FFFu, 0x8000u}) {
            values.push_back(fastembed::detail::bits_float(wide + step));
            values.push_back(fastembed::detail::bits_float(wide - step));
        }
    }
    values.resize(values.size() - values.size() % 64 + 13);  // a tail of 13: groups of 8, 4, 1
    std::vector<S> expected(values.size());
    for (std::size_t k = 0; k < values.size(); ++k) expected[k] = E::narrow(values[k]);
    auto same = [&](const std::vector<S>& got) {
        for (std::size_t k = 0; k < got.size(); ++k) {
            if (got[k].bits != expected[k].bits) return false;
        }
        return true;
    };
    std::vector<S> got(values.size());
    fastembed::narrow_row(got.data(), values.data(), values.size());
    CHECK(same(got));
#ifdef FASTEMBED_AVX2_LANES
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        std::fill(got.begin(), got.end(), S{0});
        narrow_row_avx2(got.data(), values.data(), values.size());
        CHECK(same(got));
    }
#endif
}

void test_half_rounding() {
    current_case = "float16 rounding";
    using H = fastembed::Element<fastembed::Float16>;
    CHECK(H::narrow(1.0f + 0x1p-11f).bits == 0x3C00);      // tie: to the even 1.0
    CHECK(H::narrow(1.0f + 3 * 0x1p-11f).bits == 0x3C02);  // tie: to the even neighbour above
    CHECK(H::narrow(65519.0f).bits == 0x7BFF);
    CHECK(H::narrow(65520.0f).bits == 0x7C00);              // overflow: infinity
    CHECK(H::narrow(0x1p-25f).bits == 0x0000);              // half the smallest subnormal: even 0
    CHECK(H::narrow(0x1.8p-24f).bits == 0x0002);            // 1.5 subnormal steps: even 2
    current_case = "bfloat16 rounding";
    using B = fastembed::Element<fastembed::BFloat16>;
    CHECK(B::narrow(1.0f + 0x1p-8f).bits == 0x3F80);
    CHECK(B::narrow(1.0f + 3 * 0x1p-8f).bits == 0x3F82);
    CHECK(B::narrow(-1.0f - 0x1.8p-8f).bits == 0xBF81);      // 3/4 of a step: away from 1
    current_case = "stochastic rounding";
    // 1 + 2^-12 lies a quarter of the way from 1 to the next float16, 1 + 2^-10.
    const float quarter = 1.0f + 0x1p-12f;
    CHECK(fastembed::narrow_stochastic<fastembed::Float16>(quarter, 0.2f).bits == 0x3C01);
    CHECK(fastembed::narrow_stochastic<fastembed::Float16>(quarter, 0.3f).bits == 0x3C00);
    CHECK(fastembed::narrow_stochastic<fastembed::Float16>(-quarter, 0.2f).bits == 0xBC01);
    CHECK(fastembed::narrow_stochastic<fastembed::Float16>(1.0f, 0.0f).bits == 0x3C00);  // exact
    CHECK(fastembed::narrow_stochastic<fastembed::Float16>(1e6f, 0.5f).bits == 0x7C00);  // inf
    const fastembed::Rounding rounding{true, 7, 3};
    const fastembed::RowRounder<fastembed::BFloat16> first(rounding, 11);
    const fastembed::RowRounder<fastembed::BFloat16> again(rounding, 11);
    int up = 0;
    for (std::size_t d = 0; d < 4096; ++d) {
        const std::uint16_t bits = first(1.0f + 0x1p-9f, d).bits;  // 1/4 of bfloat16's step
        CHECK(bits == again(1.0f + 0x1p-9f, d).bits);              // keyed, not sequential
        CHECK(bits == 0x3F80 || bits == 0x3F81);
        up += bits == 0x3F81;
    }
    CHECK(up > 4096 / 4 - 150 && up < 4096 / 4 + 150);
}

// Packing: codes within [0, 2^bits), every element within half a quantum (plus the 8-bit
// guard, the 4-bit bias rounding) after dequantizing, and NaN refused by position. Widths with
// and without groups of 8 lanes (4-bit: 32 and 16 elements) and a tail.
template <unsigned Bits>
void test_quantize(std::size_t dim, std::mt19937_64& rng) {
    current_case = std::string(Bits == 8 ? "quantize 8-bit" : "quantize 4-bit") + ", dim " + std::to_string(dim);
    const std::size_t V = 300;
    std::vector<float> table = make_values<float>(V * dim, false, rng);
    for (std::size_t d = 0; d < dim; ++d) table[dim + d] = 2.5f;  // a constant row
    std::vector<std::uint8_t> packed(V * fastembed::packed_row_bytes(Bits, dim));
    fastembed::quantize_rows<Bits>(table.data(), V, dim, packed.data());
    const fastembed::QuantizedRows<Bits> rows(packed.data(), V, dim);
    std::vector<float> row(dim);
    for (std::size_t r = 0; r < V; ++r) {
        rows.load(rows.row_at(r, 0), 0, dim, row.data());
        float scale;
        float bias;
        rows.scale_bias(static_cast<const std::uint8_t*>(rows.row_address(r)), scale, bias);
        const float low = *std::min_element(&table[r * dim], &table[r * dim] + dim);
        for (std::size_t d = 0; d < dim; ++d) {
            const double error = std::fabs(static_cast<double>(row[d]) - table[r * dim + d]);
            CHECK(error <= scale / 2.0 + std::fabs(static_cast<double>(low) - bias) + 1e-6);
        }
        if (r == 1) CHECK(row[0] == 2.5f && row[dim - 1] == 2.5f);
    }
    table[7 * dim + 3] = std::numeric_limits<float>::quiet_NaN();
    table[9 * dim] = std::numeric_limits<float>::infinity();
    bool thrown = false;
    try {
        fastembed::quantize_rows<Bits>(table.data(), V, dim, packed.data());
    } catch (const fastembed::NonFiniteValue& e) {
        thrown = e.row == 7 && e.column == 3;
    }
    CHECK(thrown);
}

// The baseline and AVX2 copies of packing write the same bytes, on rows whose minimum or maximum
// is a zero of either sign, whose range overflows float32, or that hold subnormals; the row
// count leaves a last group of fewer than kPackGroupRows.
template <unsigned Bits>
void test_pack_copies(std::size_t dim, std::mt19937_64& rng) {
    current_case = std::string(Bits == 8 ? "pack copies 8-bit" : "pack copies 4-bit") + ", dim " + std::to_string(dim);
    const std::size_t V = 16 * fastembed::detail::kPackGroupRows + 3;
    std::vector<float> table = make_values<float>(V * dim, false, rng);
    std::normal_distribution<float> normal;
    for (std::size_t r = 0; r < 8; ++r) {  // zeros of both signs, the rest of one sign
        const float sign = r % 2 ? -1.0f : 1.0f;
        table[r * dim] = sign;
        for (std::size_t d = 1; d < dim; ++d) {
            table[r * dim + d] = rng() % 3 ? (rng() % 2 ? 0.0f : -0.0f) : sign * std::fabs(normal(rng));
        }
    }
    table[8 * dim] = 3e38f;
    table[8 * dim + 1] = -3e38f;
    for (std::size_t d = 0; d < dim; ++d) table[9 * dim + d] *= 1e-39f;
    const std::size_t bytes = V * fastembed::packed_row_bytes(Bits, dim);
    auto pack = [&](std::vector<std::uint8_t>& out) {
        return [&](auto isa) FASTEMBED_INLINE_LAMBDA { return fastembed::detail::pack_rows<Bits, decltype(isa)::value>(table.data(), dim, out.data(), 0, V); };
    };
    std::vector<std::uint8_t> baseline(bytes);
    CHECK(fastembed::detail::call_build_copy(pack(baseline)) == V);
#ifdef FASTEMBED_AVX2_CLONE
    if (fastembed::detail::cpu_isa() >= fastembed::Isa::avx2) {
        std::vector<std::uint8_t> avx2(bytes);
        CHECK(fastembed::detail::call_avx2_copy(pack(avx2)) == V);
        CHECK(avx2 == baseline);
    }
#endif
}

// Every row reader pools the same bits in each copy of the pooled loop (the baseline one and,
// on an AVX2 or AVX-512 host, the AVX2 and AVX-512 ones: their conversions run in groups of 4,
// 8 or 16 lanes) as a scalar reference, `bag_sum(ids, begin, end, d)`: element d of the sum
// of positions [begin, end). Widths cover the lane groups and the scalar tail (4-bit: even
// widths).
template <class Reader, class BagSum>
void test_reader_copies(const char* name, const Reader& rows, std::size_t V, BagSum bag_sum,
                        std::mt19937_64& rng) {
    current_case = std::string(name) + ", dim " + std::to_string(rows.dim());
    const std::size_t dim = rows.dim();
    const std::size_t n = 200;
    std::vector<std::int64_t> ids(n);
    for (auto& id : ids) id = static_cast<std::int64_t>(rng() % V);
    std::vector<std::int64_t> bounds = {0};
    while (bounds.back() < static_cast<std::int64_t>(n)) {
        bounds.push_back(std::min<std::int64_t>(bounds.back() + 1 + static_cast<std::int64_t>(rng() % 9), n));
    }
    const fastembed::BagLayout bags{bounds.data(), bounds.size() - 1};
    std::vector<float> expected(bags.num_bags * dim);
    for (std::size_t b = 0; b < bags.num_bags; ++b) {
        for (std::size_t d = 0; d < dim; ++d) expected[b * dim + d] = bag_sum(ids, bags.begin(b), bags.end(b), d);
    }
    // Into float32, and rounded once into float16 and bfloat16 outputs; chunks of 4 positions,
    // so that longer bags keep partial sums between chunks.
    auto check_output = [&](auto out_tag) {
        using Out = typename decltype(out_tag)::type;
        std::vector<Out> narrowed(expected.size());
        fastembed::narrow_row(narrowed.data(), expected.data(), expected.size());
        using Job = fastembed::detail::BagJob<Reader, std::int64_t, Out>;
        // Each copy writes through the cache, and streams each finished row whole (a writer
        // told the output is huge; rows of whole 16-byte units only), prefetching 4 rows ahead
        // and not at all.
        auto same = [&](auto copy) {
            bool all_same = true;
            for (const std::size_t output_bytes : {std::size_t{0}, ~std::size_t{0} / 2}) {
                for (const std::size_t ahead : {std::size_t{0}, std::size_t{4}}) {
                    std::vector<Out> out(bags.num_bags * dim, Out{});
                    std::atomic<bool> bad_id{false};
                    const Job job{rows,       ids.data(), bags,  nullptr, fastembed::kNoPadding, false,
                                  out.data(), nullptr,    ahead, fastembed::CacheLevel::l1, 4,
                                  fastembed::RowWriter(output_bytes, dim * sizeof(Out)),
                                  fastembed::kIdsChecked, &bad_id};
                    copy(job);
                    all_same &= std::memcmp(out.data(), narrowed.data(), out.size() * sizeof(Out)) == 0;
                }
            }
            return all_same;
        };
        auto pool = [](const Job& job) {
            return [&job](auto isa) FASTEMBED_INLINE_LAMBDA {
                fastembed::detail::pool_bags_in<false, false, false>(isa, job, 0, job.bags.num_bags);
            };
        };
        CHECK(same([&](const Job& job) { fastembed::detail::call_build_copy(pool(job)); }));
#ifdef FASTEMBED_AVX2_CLONE
        if (fastembed::detail::cpu_isa() >= fastembed::Isa::avx2) {
            CHECK(same([&](const Job& job) { fastembed::detail::call_avx2_copy(pool(job)); }));
        }
#endif
#ifdef FASTEMBED_AVX512_CLONE
        if (fastembed::detail::cpu_isa() == fastembed::Isa::avx512) {
            CHECK(same([&](const Job& job) { fastembed::detail::call_avx512_copy(pool(job)); }));
        }
#endif
    };
    check_output(Tag<float>{});
    check_output(Tag<fastembed::Float16>{});
    check_output(Tag<fastembed::BFloat16>{});
}

// A plain reader's bag sum: each element widened on its own (`element(id, d)`), the bag's rows
// added in position order.
template <class Element>
auto added_in_order(Element element) {
    return [element](const std::vector<std::int64_t>& ids, std::size_t begin, std::size_t end, std::size_t d) {
        float sum = 0.0f;
        for (std::size_t i = begin; i < end; ++i) {
            const float value = element(static_cast<std::size_t>(ids[i]), d);
            sum = i == begin ? value : sum + value;
        }
        return sum;
    };
}

// The reader of `table` quantized to Bits, against a bag summed element by element: each code
// (8-bit: a byte; 4-bit: the low nibble of its pair byte for even d, the high one for odd)
// times its row's scale fused into the running sum (std::fma, from -0, in position order),
// the rows' biases summed apart and added at the end.
template <unsigned Bits>
void test_quantized_reader_copies(const char* name, const std::vector<float>& table, std::size_t V,
                                  std::size_t dim, std::mt19937_64& rng) {
    std::vector<std::uint8_t> packed(V * fastembed::packed_row_bytes(Bits, dim));
    fastembed::quantize_rows<Bits>(table.data(), V, dim, packed.data());
    const fastembed::QuantizedRows<Bits> rows(packed.data(), V, dim);
    auto bag_sum = [&](const std::vector<std::int64_t>& ids, std::size_t begin, std::size_t end, std::size_t d) {
        float sum = -0.0f;
        float biases = -0.0f;
        for (std::size_t i = begin; i < end; ++i) {
            const auto* row = static_cast<const std::uint8_t*>(rows.row_address(static_cast<std::size_t>(ids[i])));
            float scale;
            float bias;
            rows.scale_bias(row, scale, bias);
            const int code = Bits == 8 ? row[d] : d % 2 == 0 ? row[d / 2] & 0x0F : row[d / 2] >> 4;
            sum = std::fma(static_cast<float>(code), scale, sum);
            biases += bias;
        }
        return sum + biases;
    };
    test_reader_copies(name, rows, V, bag_sum, rng);
}

void test_reader_copies_all(std::mt19937_64& rng) {
    const std::size_t V = 50;
    for (std::size_t dim : {1, 2, 7, 8, 9, 15, 16, 17, 18, 64, 66, 67}) {
        std::vector<float> table = make_values<float>(V * dim, false, rng);
        table[0] = 0x1p-20f;  // a float16 subnormal
        std::vector<fastembed::Float16> half(V * dim);
        std::vector<fastembed::BFloat16> brain(V * dim);
        for (std::size_t k = 0; k < V * dim; ++k) {
            half[k] = fastembed::Element<fastembed::Float16>::narrow(table[k]);
            brain[k] = fastembed::Element<fastembed::BFloat16>::narrow(table[k]);
        }
        test_reader_copies("float16 reader", fastembed::PlainRows<fastembed::Float16>(half.data(), V, dim), V,
                           added_in_order([&](std::size_t id, std::size_t d) {
                               return fastembed::detail::half_to_float(half[id * dim + d].bits);
                           }), rng);
        test_reader_copies("bfloat16 reader", fastembed::PlainRows<fastembed::BFloat16>(brain.data(), V, dim), V,
                           added_in_order([&](std::size_t id, std::size_t d) {
                               return fastembed::detail::bfloat16_to_float(brain[id * dim + d].bits);
                           }), rng);
        test_quantized_reader_copies<8>("8-bit reader", table, V, dim, rng);
        if (dim % 2 == 0) test_quantized_reader_copies<4>("4-bit reader", table, V, dim, rng);
    }
}

}  // namespace

int main() {
    std::mt19937_64 rng(20240611);
    test_half_round_trip<fastembed::Float16>("float16 round trip");
    test_half_round_trip<fastembed::BFloat16>("bfloat16 round trip");
    test_half_rounding();
    test_narrow_lanes<fastembed::Float16>("float16 narrowing in lanes");
    test_narrow_lanes<fastembed::BFloat16>("bfloat16 narrowing in lanes");
    for (std::size_t dim : {10, 38, 48}) {
        test_quantize<8>(dim, rng);
        test_quantize<4>(dim, rng);
    }
    for (std::size_t dim : {2, 10, 16, 38, 48, 64, 130}) {
        test_pack_copies<8>(dim, rng);
        test_pack_copies<4>(dim, rng);
    }
    test_reader_copies_all(rng);
    return finish("reader_tests");
}
