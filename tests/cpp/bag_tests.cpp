// C++-only tests of the pooled kernel (no Python): bags of every mode, weighted, with padding,
// long bags in chunks, against a naive loop. Built with -DFASTEMBED_KERNEL_TESTS=ON; with
// -DFASTEMBED_SANITIZE=ON they run under ASan + UBSan, with every buffer exactly the size the
// kernel may touch. (The pooled loop's three copies make its tests a program of their own, so
// that they compile beside the other kernels' tests; reader_tests.cpp holds its readers'.)
//
// Exit status: 0 when every CHECK held, 1 otherwise (each failure is printed with its case).

#include <algorithm>
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
#include "kernels/thread_pool.hpp"
#include "check.hpp"
#include "inputs.hpp"

namespace {

using namespace fastembed_tests;

// --- pooled lookups -------------------------------------------------------------------------------

using fastembed::BagMode;

const char* mode_name(BagMode mode) {
    return mode == BagMode::sum ? "sum" : mode == BagMode::mean ? "mean" : "max";
}

// Bag bounds over the first `used` of the ids: bags of 0..max_size ids, empty ones included.
std::vector<std::int64_t> make_bounds(std::size_t used, std::size_t max_size, std::mt19937_64& rng) {
    std::vector<std::int64_t> bounds{0};
    std::uniform_int_distribution<std::size_t> size(0, max_size);
    while (static_cast<std::size_t>(bounds.back()) < used) {
        bounds.push_back(static_cast<std::int64_t>(std::min(used, bounds.back() + size(rng))));
    }
    return bounds;
}

// Each bag pooled one entry at a time in position order, padding entries skipped; the mean is
// the sum divided by the entry count; max keeps the first largest value and its position.
template <class T, class I>
std::vector<T> naive_bag(const std::vector<T>& weight, std::size_t dim, const std::vector<I>& ids,
                         const std::vector<std::int64_t>& bounds, BagMode mode,
                         const T* per_sample_weights, std::int64_t padding,
                         std::vector<std::int64_t>& argmax) {
    const std::size_t num_bags = bounds.size() - 1;
    std::vector<T> out(num_bags * dim, T(0));
    argmax.assign(num_bags * dim, -1);
    for (std::size_t b = 0; b < num_bags; ++b) {
        T* acc = out.data() + b * dim;
        std::size_t count = 0;
        const auto end = static_cast<std::size_t>(bounds[b + 1]);
        for (auto i = static_cast<std::size_t>(bounds[b]); i < end; ++i) {
            if (static_cast<std::int64_t>(ids[i]) == padding) continue;
            const T* row = weight.data() + static_cast<std::size_t>(ids[i]) * dim;
            const T scale = per_sample_weights != nullptr ? per_sample_weights[i] : T(1);
            for (std::size_t d = 0; d < dim; ++d) {
                if (mode != BagMode::max) {
                    acc[d] = count == 0 ? scale * row[d] : acc[d] + scale * row[d];
                } else if (count == 0 || row[d] > acc[d]) {
                    acc[d] = row[d];
                    argmax[b * dim + d] = static_cast<std::int64_t>(i);
                }
            }
            ++count;
        }
        if (mode == BagMode::mean && count > 1) {
            for (std::size_t d = 0; d < dim; ++d) acc[d] /= static_cast<T>(count);
        }
    }
    return out;
}

template <class T, class I>
std::vector<T> run_bag(const std::vector<T>& weight, std::size_t V, std::size_t dim,
                       const std::vector<I>& ids, const std::vector<std::int64_t>& bounds, BagMode mode,
                       const T* per_sample_weights, std::int64_t padding,
                       std::vector<std::int64_t>& argmax, std::size_t threads) {
    fastembed::set_num_threads(threads);
    const fastembed::BagLayout bags{bounds.data(), bounds.size() - 1};
    std::vector<T> out(bags.num_bags * dim, static_cast<T>(kSentinel));
    argmax.assign(mode == BagMode::max ? bags.num_bags * dim : 0, std::int64_t{-7});
    fastembed::embedding_bag_forward(weight.data(), V, dim, ids.data(), ids.size(), bags, mode,
                                     per_sample_weights, padding, out.data(),
                                     mode == BagMode::max ? argmax.data() : nullptr);
    return out;
}

// Every thread count gives the bits of the naive loop, integer-valued or general tables.
// `used` < n: the ids past the last bag belong to none (include_last_offset).
template <class T, class I>
void test_embedding_bag(std::size_t V, std::size_t dim, std::size_t n, std::size_t used,
                        std::size_t max_size, Ids kind, std::mt19937_64& rng) {
    const auto ids = make_ids<I>(kind, n, V, rng);
    const auto bounds = make_bounds(used, max_size, rng);
    for (bool integers : {true, false}) {
        const auto weight = make_values<T>(V * dim, integers, rng);
        const auto scales = make_values<T>(n, integers, rng);
        for (BagMode mode : {BagMode::sum, BagMode::mean, BagMode::max}) {
            for (bool weighted : {false, true}) {
                if (weighted && mode != BagMode::sum) continue;
                for (std::int64_t padding : {fastembed::kNoPadding, static_cast<std::int64_t>(V / 2)}) {
                    current_case = describe<T, I>("embedding_bag", V, dim, n, kind) + " " +
                                   mode_name(mode) + (weighted ? " weighted" : "") +
                                   (integers ? " integers" : "") +
                                   " bags=" + std::to_string(bounds.size() - 1) +
                                   " padding=" + std::to_string(padding);
                    const T* per_sample = weighted ? scales.data() : nullptr;
                    std::vector<std::int64_t> expected_argmax, argmax;
                    const auto expected =
                        naive_bag(weight, dim, ids, bounds, mode, per_sample, padding, expected_argmax);
                    const auto first =
                        run_bag(weight, V, dim, ids, bounds, mode, per_sample, padding, argmax, 1);
                    // Bitwise for any values: the kernel combines each element's rows in
                    // position order, as the naive loop does.
                    CHECK(same_bytes(first, expected));
                    if (mode == BagMode::max) CHECK(argmax == expected_argmax);
                    for (std::size_t threads : {2, 3, 8}) {
                        std::vector<std::int64_t> again;
                        CHECK(same_bytes(run_bag(weight, V, dim, ids, bounds, mode, per_sample, padding,
                                                 again, threads),
                                         first));
                        CHECK(again == argmax);
                    }
                }
            }
        }
    }
}

// Bags longer than a pooling chunk (pooling_chunk_bytes() of rows; partial results go through the
// output row between chunks), rows of several column blocks and a tail, padding entries filling
// whole chunks at a bag's start, middle and end, and a bag of nothing but padding: bitwise
// the naive loop, argmax included.
template <class T, class I>
void test_bag_chunks(std::mt19937_64& rng) {
    for (std::size_t dim : {std::size_t{300}, std::size_t{67}, std::size_t{1}}) {
        const std::size_t V = 50;
        const std::int64_t padding = 7;
        const std::size_t chunk =
            std::max<std::size_t>(fastembed::pooling_chunk_bytes() / (dim * sizeof(T)), 8);
        const std::size_t first_bag = 6 * chunk + 5;
        const std::size_t n = first_bag + 3 * chunk;
        auto ids = make_ids<I>(Ids::uniform, n, V, rng);
        auto pad = [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) ids[i] = static_cast<I>(padding);
        };
        pad(0, 2 * chunk + 1);
        pad(3 * chunk, 4 * chunk);
        pad(first_bag - chunk - 2, n);
        const std::vector<std::int64_t> bounds{0, static_cast<std::int64_t>(first_bag),
                                               static_cast<std::int64_t>(n)};
        const auto weight = make_values<T>(V * dim, false, rng);
        const auto scales = make_values<T>(n, false, rng);
        for (BagMode mode : {BagMode::sum, BagMode::mean, BagMode::max}) {
            for (bool weighted : {false, true}) {
                if (weighted && mode != BagMode::sum) continue;
                current_case = describe<T, I>("embedding_bag chunks", V, dim, n, Ids::uniform) + " " +
                               mode_name(mode) + (weighted ? " weighted" : "");
                const T* per_sample = weighted ? scales.data() : nullptr;
                std::vector<std::int64_t> expected_argmax, argmax;
                const auto expected =
                    naive_bag(weight, dim, ids, bounds, mode, per_sample, padding, expected_argmax);
                for (std::size_t threads : {1, 2}) {
                    CHECK(same_bytes(run_bag(weight, V, dim, ids, bounds, mode, per_sample, padding,
                                             argmax, threads),
                                     expected));
                    if (mode == BagMode::max) CHECK(argmax == expected_argmax);
                }
            }
        }
    }
}

// An output past the streaming threshold (RowWriter: each finished row streamed whole, partial
// sums kept in a staging row), starting on a cache line, 16 bytes past one and at an odd
// element: bitwise the naive loop, nothing written outside it. Rows of 64 bytes (whole lines)
// and of 9 elements (never streamed); a bag as long as three pooling chunks among short ones.
template <class T, class I>
void test_streamed_bag_output(std::mt19937_64& rng) {
    for (const std::size_t dim : {64 / sizeof(T), std::size_t{9}}) {
        const std::size_t V = 100;
        const std::size_t num_bags = fastembed::streaming_bytes() / (dim * sizeof(T)) + 100;
        const std::size_t chunk =
            std::max<std::size_t>(fastembed::pooling_chunk_bytes() / (dim * sizeof(T)), 8);
        std::vector<std::int64_t> bounds{0};
        std::uniform_int_distribution<std::size_t> size(0, 3);
        for (std::size_t b = 0; b < num_bags; ++b) {
            const std::size_t length = b == num_bags / 2 ? 3 * chunk : size(rng);
            bounds.push_back(bounds.back() + static_cast<std::int64_t>(length));
        }
        const auto n = static_cast<std::size_t>(bounds.back());
        const auto ids = make_ids<I>(Ids::uniform, n, V, rng);
        const auto weight = make_values<T>(V * dim, false, rng);
        const fastembed::BagLayout bags{bounds.data(), num_bags};
        PlacedOutput<T> output(num_bags * dim);
        for (BagMode mode : {BagMode::sum, BagMode::mean, BagMode::max}) {
            std::vector<std::int64_t> expected_argmax;
            const auto expected = naive_bag(weight, dim, ids, bounds, mode, static_cast<const T*>(nullptr),
                                            fastembed::kNoPadding, expected_argmax);
            for (const std::size_t lead : {std::size_t{0}, 16 / sizeof(T), std::size_t{1}}) {
                current_case = describe<T, I>("embedding_bag streamed", V, dim, n, Ids::uniform) + " " +
                               mode_name(mode) + " output " + std::to_string(lead * sizeof(T)) +
                               " bytes past a line";
                for (std::size_t threads : {1, 3}) {
                    fastembed::set_num_threads(threads);
                    T* out = output.place(lead);
                    std::vector<std::int64_t> argmax(mode == BagMode::max ? num_bags * dim : 0);
                    fastembed::embedding_bag_forward(weight.data(), V, dim, ids.data(), n, bags, mode,
                                                     static_cast<const T*>(nullptr), fastembed::kNoPadding,
                                                     out, mode == BagMode::max ? argmax.data() : nullptr);
                    CHECK(std::memcmp(out, expected.data(), num_bags * dim * sizeof(T)) == 0);
                    CHECK(output.untouched_around());
                    if (mode == BagMode::max) CHECK(argmax == expected_argmax);
                }
            }
        }
    }
}

template <class T, class I>
void test_bags_for(std::mt19937_64& rng) {
    // Bags of up to 0..3 ids (many empty), 0..40, 0..600; D = 1, odd widths, long rows. (The
    // long rows' bags span dozens of pooling chunks; the case is most of this program's time
    // under the sanitizers at -O0, so it is kept to 6000 ids.)
    for (std::size_t dim : {1, 7, 17, 64}) {
        test_embedding_bag<T, I>(1000, dim, 5000, 5000, 3, Ids::uniform, rng);
        test_embedding_bag<T, I>(1000, dim, 5000, 4990, 40, Ids::zipf, rng);
    }
    test_embedding_bag<T, I>(3000, 300, 6000, 6000, 600, Ids::uniform, rng);
    test_embedding_bag<T, I>(50, 8, 3000, 3000, 40, Ids::all_equal, rng);  // every entry padding
    test_embedding_bag<T, I>(1, 3, 100, 100, 5, Ids::all_equal, rng);
    test_embedding_bag<T, I>(10, 4, 0, 0, 5, Ids::uniform, rng);  // no ids, no bags
    test_bag_chunks<T, I>(rng);
    test_streamed_bag_output<T, I>(rng);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20240611);
    test_bags_for<float, std::int32_t>(rng);
    test_bags_for<float, std::int64_t>(rng);
    test_bags_for<double, std::int32_t>(rng);
    test_bags_for<double, std::int64_t>(rng);
    return finish("bag_tests");
}
