// C++-only tests of the top-k search (kernels/topk.hpp), with a plain-loop product instead of
// BLAS, against a full sort of every score. Built with -DFASTEMBED_KERNEL_TESTS=ON; under
// -DFASTEMBED_SANITIZE=ON every buffer has exactly the size the kernel may touch.
//
// Exit status: 0 when every CHECK held, 1 otherwise.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/thread_pool.hpp"
#include "kernels/topk.hpp"
#include "check.hpp"

namespace {

using namespace fastembed_tests;

// The product the kernel's contract asks for, as a plain loop in index order.
struct LoopProduct {
    template <class T>
    void operator()(const T* a, std::size_t m, const T* b, std::size_t n, std::size_t dim, T* c) const {
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
                T sum = 0;
                for (std::size_t d = 0; d < dim; ++d) sum += a[i * dim + d] * b[j * dim + d];
                c[i * n + j] = sum;
            }
        }
    }
};

// Small integers: every dot product is exact, so the expected order (ties included) is exact.
template <class T>
std::vector<T> small_integers(std::size_t n, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> value(-3, 3);
    std::vector<T> out(n);
    for (auto& x : out) x = static_cast<T>(value(rng));
    return out;
}

template <class T>
void test_dot_against_sort(std::size_t rows, std::size_t dim, std::size_t num_queries, std::size_t k,
                           std::size_t num_excluded, std::mt19937_64& rng) {
    current_case = "dot V=" + std::to_string(rows) + " D=" + std::to_string(dim) +
                   " Q=" + std::to_string(num_queries) + " k=" + std::to_string(k) +
                   " m=" + std::to_string(num_excluded) + (sizeof(T) == 4 ? " float32" : " float64");
    const std::vector<T> table = small_integers<T>(rows * dim, rng);
    const std::vector<T> queries = small_integers<T>(num_queries * dim, rng);
    std::vector<std::int64_t> exclude(num_queries * num_excluded);
    std::uniform_int_distribution<std::int64_t> excluded_id(-1, static_cast<std::int64_t>(rows) - 1);
    for (auto& id : exclude) id = excluded_id(rng);

    std::vector<std::int64_t> expected_ids(num_queries * k, -1);
    std::vector<T> expected_scores(num_queries * k, -std::numeric_limits<T>::infinity());
    for (std::size_t q = 0; q < num_queries; ++q) {
        std::vector<fastembed::Scored<T>> all;
        for (std::size_t r = 0; r < rows; ++r) {
            const auto* skipped = exclude.data() + q * num_excluded;
            if (std::find(skipped, skipped + num_excluded, static_cast<std::int64_t>(r)) !=
                skipped + num_excluded) {
                continue;
            }
            T score = 0;
            for (std::size_t d = 0; d < dim; ++d) score += queries[q * dim + d] * table[r * dim + d];
            all.push_back({score, static_cast<std::int64_t>(r)});
        }
        std::sort(all.begin(), all.end(), fastembed::ranks_before<T>);
        for (std::size_t i = 0; i < std::min(k, all.size()); ++i) {
            expected_ids[q * k + i] = all[i].id;
            expected_scores[q * k + i] = all[i].score;
        }
    }
    for (std::size_t threads : {1, 2, 3, 8}) {
        fastembed::set_num_threads(threads);
        std::vector<std::int64_t> ids(num_queries * k);
        std::vector<T> scores(num_queries * k);
        fastembed::topk_search(table.data(), rows, dim, queries.data(), num_queries, k,
                               fastembed::TopkMetric::dot, exclude.data(), num_excluded, ids.data(),
                               scores.data(), LoopProduct{});
        CHECK(ids == expected_ids);
        CHECK(scores == expected_scores);
    }
}

template <class T>
void test_cosine_special_rows() {
    current_case = std::string("cosine zero and NaN rows ") + (sizeof(T) == 4 ? "float32" : "float64");
    const T nan = std::numeric_limits<T>::quiet_NaN();
    // Rows: 0 zero, 1 NaN, 2 = (1, 0), 3 = (2, 0) (same direction: a tie broken by id), 4 = (0, 1),
    // 5 = (-1, 0); squares of (1e30, 0) overflow float32 and are summed again in double.
    const std::vector<T> table{0, 0, nan, 1, 1, 0, 2, 0, 0, 1, -1, 0, T(1e30), 0};
    const std::vector<T> queries{3, 0, 0, 0};
    std::vector<std::int64_t> ids(2 * 7);
    std::vector<T> scores(2 * 7);
    fastembed::topk_search(table.data(), 7, 2, queries.data(), 2, 7, fastembed::TopkMetric::cosine,
                           static_cast<const std::int64_t*>(nullptr), 0, ids.data(), scores.data(),
                           LoopProduct{});
    CHECK((std::vector<std::int64_t>(ids.begin(), ids.begin() + 7) ==
           std::vector<std::int64_t>{2, 3, 6, 0, 4, 5, 1}));
    CHECK(scores[0] == 1 && scores[1] == 1 && std::fabs(scores[2] - 1) < 1e-6 && scores[3] == 0);
    CHECK(scores[5] == -1);
    CHECK(std::isnan(scores[6]));
    // A zero query: every number scores 0, in id order; the NaN row last.
    CHECK((std::vector<std::int64_t>(ids.begin() + 7, ids.end()) ==
           std::vector<std::int64_t>{0, 2, 3, 4, 5, 6, 1}));
}

void test_exclude_leaves_fewer_than_k() {
    current_case = "exclude leaves fewer than k";
    const std::vector<float> table{1, 2, 3};
    const std::vector<float> query{1};
    const std::vector<std::int64_t> exclude{2, -1, 0};
    std::vector<std::int64_t> ids(3);
    std::vector<float> scores(3);
    fastembed::topk_search(table.data(), 3, 1, query.data(), 1, 3, fastembed::TopkMetric::dot,
                           exclude.data(), 3, ids.data(), scores.data(), LoopProduct{});
    CHECK((ids == std::vector<std::int64_t>{1, -1, -1}));
    CHECK(scores[0] == 2 && std::isinf(scores[1]) && scores[1] < 0 && std::isinf(scores[2]));
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261205);
    for (int repeat = 0; repeat < 2; ++repeat) {
        test_dot_against_sort<float>(1, 3, 1, 1, 0, rng);
        test_dot_against_sort<float>(50, 0, 3, 7, 0, rng);  // no width: every score is 0
        test_dot_against_sort<float>(300, 5, 7, 10, 3, rng);
        test_dot_against_sort<double>(300, 17, 4, 300, 2, rng);  // k = V
        test_dot_against_sort<float>(5000, 3, 2, 20, 0, rng);  // many chunks: partial merges
        test_dot_against_sort<double>(3000, 4, 600, 5, 1, rng);  // several query blocks
    }
    test_cosine_special_rows<float>();
    test_cosine_special_rows<double>();
    test_exclude_leaves_fewer_than_k();
    return finish("topk_tests");
}
