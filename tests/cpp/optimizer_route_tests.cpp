// C++-only tests of the two kernels that consume the distinct rows of a batch besides the
// backward (no Python): the fused optimizer step (reduce_by_id into an UpdateSink) and the
// routing of ids to shards (route_distinct, expand_rows, the sharded row copies), compared
// against naive loops. A program of its own beside kernel_tests so that the two compile side by
// side (the sanitized build of one program holding both was CI's longest step). Built with
// -DFASTEMBED_KERNEL_TESTS=ON; under ASan + UBSan with -DFASTEMBED_SANITIZE=ON.
//
// Exit status: 0 when every CHECK held, 1 otherwise (each failure is printed with its case).

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/bag_backward.hpp"
#include "kernels/gather.hpp"
#include "kernels/optimizers.hpp"
#include "kernels/route.hpp"
#include "kernels/runs.hpp"
#include "kernels/scatter.hpp"
#include "kernels/thread_pool.hpp"
#include "check.hpp"
#include "inputs.hpp"

namespace {

using namespace fastembed_tests;

// --- a fused optimizer ---------------------------------------------------------------------------

// One fused SGD step (with momentum when momentum != 0) through reduce_by_id and UpdateSink, as
// the optimizer binding runs it; `buffer` is the momentum state, updated in place.
template <class T, class I>
std::vector<T> run_sgd(std::vector<T> weight, std::vector<T>& buffer, const std::vector<T>& grad,
                       const std::vector<I>& ids, std::size_t V, std::size_t dim, T momentum,
                       std::int64_t padding, std::size_t threads) {
    fastembed::set_num_threads(threads);
    T* momentum_buffer = momentum != 0 ? buffer.data() : nullptr;
    const fastembed::SgdUpdate<T> update{weight.data(), momentum_buffer, dim, T(0.5), momentum,
                                         fastembed::Rounding{}};
    const fastembed::GradOptions options = fastembed::bag_grad_options(padding, false);
    fastembed::UpdateSink<T, fastembed::SgdUpdate<T>> sink(update, dim, options);
    fastembed::reduce_by_id(ids.data(), ids.size(), V, grad.data(), dim, false, sink);
    return weight;
}

// The textbook step on the rows that occur (padding excepted), from each id's gradient summed in
// double; every other row, and its momentum, keeps its bits.
template <class T, class I>
std::vector<T> naive_sgd(std::vector<T> weight, std::vector<T>& buffer, const std::vector<T>& grad,
                         const std::vector<I>& ids, std::size_t dim, T momentum, std::int64_t padding) {
    const std::size_t V = weight.size() / std::max<std::size_t>(dim, 1);
    std::vector<double> sums(V * dim, 0.0);
    std::vector<bool> touched(V, false);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto v = static_cast<std::size_t>(ids[i]);
        touched[v] = static_cast<std::int64_t>(v) != padding;
        for (std::size_t d = 0; d < dim; ++d) sums[v * dim + d] += grad[i * dim + d];
    }
    for (std::size_t v = 0; v < V; ++v) {
        if (!touched[v]) continue;
        for (std::size_t d = 0; d < dim; ++d) {
            T g = static_cast<T>(sums[v * dim + d]);
            if (momentum != 0) {
                buffer[v * dim + d] = momentum * buffer[v * dim + d] + g;
                g = buffer[v * dim + d];
            }
            weight[v * dim + d] -= T(0.5) * g;
        }
    }
    return weight;
}

// Integer values, lr = momentum = 0.5: every operation is exact, so the fused step equals the
// naive one bit for bit; general values: every thread count gives the bits of one thread.
template <class T, class I>
void test_sgd(std::size_t V, std::size_t dim, std::size_t n, Ids kind, std::mt19937_64& rng) {
    const auto ids = make_ids<I>(kind, n, V, rng);
    for (bool integers : {true, false}) {
        const auto weight = make_values<T>(V * dim, integers, rng);
        const auto grad = make_values<T>(n * dim, integers, rng);
        const auto initial_buffer = make_values<T>(V * dim, integers, rng);
        for (T momentum : {T(0), T(0.5)}) {
            for (std::int64_t padding : {fastembed::kNoPadding, static_cast<std::int64_t>(ids[0])}) {
                current_case = describe<T, I>("sgd", V, dim, n, kind) + " momentum=" +
                               std::to_string(momentum) + (integers ? " integers" : "") +
                               " padding=" + std::to_string(padding);
                auto expected_buffer = initial_buffer;
                const auto expected =
                    naive_sgd(weight, expected_buffer, grad, ids, dim, momentum, padding);
                auto first_buffer = initial_buffer;
                const auto first = run_sgd(weight, first_buffer, grad, ids, V, dim, momentum, padding, 1);
                if (integers) {
                    CHECK(same_bytes(first, expected));
                    CHECK(same_bytes(first_buffer, expected_buffer));
                }
                for (std::size_t threads : {2, 5, 8}) {
                    auto buffer = initial_buffer;
                    const auto got =
                        run_sgd(weight, buffer, grad, ids, V, dim, momentum, padding, threads);
                    CHECK(same_bytes(got, first));
                    CHECK(same_bytes(buffer, first_buffer));
                }
            }
        }
    }
}

// Distinct ids routed to shards against a naive dedupe and bucketing, then each shard's rows
// expanded back: the result is the plain gather of the whole table. The renaming to
// concatenated rows against its definition. Placement is a template, so both are run.
template <class T, class I, class Placement>
void test_route_with(const char* name, std::size_t V, std::size_t dim, std::size_t n,
                     std::size_t shards, const Placement& placement, Ids kind, std::mt19937_64& rng) {
    current_case = describe<T, I>(name, V, dim, n, kind) + " shards=" + std::to_string(shards);
    const auto ids = make_ids<I>(kind, n, V, rng);
    // Each shard's table: its rows of a whole table, in local order.
    const auto weight = make_values<T>(V * dim, false, rng);
    std::vector<std::vector<T>> tables(shards);
    std::vector<std::uint64_t> first_row(shards + 1, 0);
    for (std::size_t id = 0; id < V; ++id) {
        auto& table = tables[placement.shard(id)];
        const std::size_t local = placement.local(id);
        if (table.size() < (local + 1) * dim) table.resize((local + 1) * dim);
        std::copy(weight.begin() + id * dim, weight.begin() + (id + 1) * dim, table.begin() + local * dim);
    }
    for (std::size_t s = 0; s < shards; ++s) first_row[s + 1] = first_row[s] + tables[s].size() / dim;
    const fastembed::ConcatenatedRows<Placement> concatenated{placement, first_row.data()};
    // Expected buckets: each shard's distinct local rows, increasing.
    std::vector<std::vector<I>> expected_local(shards);
    for (std::size_t i = 0; i < n; ++i) {
        expected_local[placement.shard(static_cast<std::uint64_t>(ids[i]))].push_back(
            static_cast<I>(placement.local(static_cast<std::uint64_t>(ids[i]))));
    }
    for (auto& bucket : expected_local) {
        std::sort(bucket.begin(), bucket.end());
        bucket.erase(std::unique(bucket.begin(), bucket.end()), bucket.end());
    }
    const auto expected = naive_gather(weight, dim, ids);
    constexpr bool identity = std::is_same_v<Placement, fastembed::RangePlacement>;
    for (std::size_t threads = 1; threads <= kMaxThreads; threads += 3) {
        fastembed::set_num_threads(threads);
        std::vector<I> renamed(n);
        fastembed::concatenate_rows(ids.data(), n, concatenated, renamed.data());
        for (std::size_t i = 0; i < n; ++i) {
            const auto id = static_cast<std::uint64_t>(ids[i]);
            CHECK(static_cast<std::uint64_t>(renamed[i]) == first_row[placement.shard(id)] + placement.local(id));
        }
        std::vector<I> local;
        std::vector<std::int64_t> inverse(n, -1), offsets(shards + 1);
        fastembed::route_distinct(ids.data(), n, V, shards, concatenated, false, inverse.data(), offsets.data(),
                                  [&](std::size_t distinct) {
                                      local.resize(distinct);
                                      return local.data();
                                  });
        for (std::size_t s = 0; s < shards; ++s) {
            CHECK(std::vector<I>(local.begin() + offsets[s], local.begin() + offsets[s + 1]) == expected_local[s]);
        }
        CHECK(offsets[0] == 0 && static_cast<std::size_t>(offsets[shards]) == local.size());
        if constexpr (identity) {  // a range placement: routing the ids as they are gives the same
            std::vector<I> same_local;
            std::vector<std::int64_t> same_inverse(n), same_offsets(shards + 1);
            fastembed::route_distinct(ids.data(), n, V, shards, concatenated, true, same_inverse.data(),
                                      same_offsets.data(), [&](std::size_t distinct) {
                                          same_local.resize(distinct);
                                          return same_local.data();
                                      });
            CHECK(same_local == local && same_inverse == inverse && same_offsets == offsets);
        }
        // Each shard answers its rows; expanded back, they are the whole table's gather.
        std::vector<std::vector<T>> answers(shards);
        std::vector<const T*> answer_rows(shards);
        for (std::size_t s = 0; s < shards; ++s) {
            for (auto k = offsets[s]; k < offsets[s + 1]; ++k) {
                const auto row = static_cast<std::size_t>(local[static_cast<std::size_t>(k)]);
                answers[s].insert(answers[s].end(), tables[s].begin() + row * dim, tables[s].begin() + (row + 1) * dim);
            }
            answer_rows[s] = answers[s].data();
        }
        std::vector<T> out(n * dim, static_cast<T>(kSentinel));
        fastembed::expand_rows(answer_rows.data(), offsets.data(), shards, dim, inverse.data(), n, out.data());
        CHECK(same_bytes(out, expected));
        // Without routing: rows read straight from the shards' tables, in both orders.
        std::vector<const T*> pointers(shards);
        for (std::size_t s = 0; s < shards; ++s) pointers[s] = tables[s].data();
        const fastembed::ShardedRows<T, Placement> sharded{pointers.data(), placement, dim};
        std::vector<T> direct(n * dim, static_cast<T>(kSentinel));
        const fastembed::RowCopy<T, fastembed::ShardedRows<T, Placement>> rows(sharded, dim);
        fastembed::copy_rows_in_position_order(rows, V, dim, ids.data(), n, direct.data());
        CHECK(same_bytes(direct, expected));
        std::vector<T> in_id_order(n * dim, static_cast<T>(kSentinel));
        fastembed::copy_rows_in_id_order(rows, V, dim, ids.data(), n, in_id_order.data());
        CHECK(same_bytes(in_id_order, expected));
    }
}

// Divisor against / and %: powers of two, 32-bit and 64-bit operands.
void test_divisor(std::mt19937_64& rng) {
    current_case = "divisor";
    for (std::uint64_t d : {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{3}, std::uint64_t{4},
                            std::uint64_t{7}, std::uint64_t{1} << 20, std::uint64_t{1000003},
                            (std::uint64_t{1} << 33) + 5, std::uint64_t{1} << 40}) {
        const fastembed::Divisor divisor(d);
        for (int k = 0; k < 2000; ++k) {
            const std::uint64_t x = k < 1000 ? rng() % (std::uint64_t{1} << 32) : rng() >> 1;
            CHECK(divisor.quotient(x) == x / d);
            CHECK(divisor.remainder(x) == x % d);
        }
    }
}

// The two ways of finding a batch's distinct rows give the same arrays, on either side of the
// shape that picks one (marks_distinct_rows), at every thread count.
template <class I>
void test_distinct_strategies(std::mt19937_64& rng) {
    const std::size_t rows = 10'007, boundary = (rows + 31) / 32;  // the smallest n that marks
    CHECK(fastembed::marks_distinct_rows(boundary, rows) && !fastembed::marks_distinct_rows(boundary - 1, rows));
    CHECK(!fastembed::marks_distinct_rows(std::size_t{1} << 40, std::uint64_t{1} << 32));
    for (std::size_t n : {std::size_t{0}, boundary - 1, boundary, std::size_t{30'000}}) {
        for (Ids kind : {Ids::uniform, Ids::zipf, Ids::all_equal}) {
            const auto keys = make_ids<I>(kind, n, rows, rng);
            for (std::size_t threads = 1; threads <= kMaxThreads; threads += 3) {
                fastembed::set_num_threads(threads);
                std::vector<I> sorted_local, marked_local;
                std::vector<std::int64_t> sorted_inverse(n, -1), marked_inverse(n, -2);
                fastembed::distinct_by_sorting(keys.data(), n, rows, sorted_inverse.data(), [&](std::size_t u) {
                    sorted_local.resize(u);
                    return sorted_local.data();
                });
                fastembed::distinct_by_marking(keys.data(), n, rows, marked_inverse.data(), [&](std::size_t u) {
                    marked_local.resize(u);
                    return marked_local.data();
                });
                CHECK(marked_local == sorted_local && marked_inverse == sorted_inverse);
                CHECK(std::is_sorted(sorted_local.begin(), sorted_local.end()) &&
                      std::adjacent_find(sorted_local.begin(), sorted_local.end()) == sorted_local.end());
                for (std::size_t i = 0; i < n; ++i) CHECK(sorted_local[static_cast<std::size_t>(sorted_inverse[i])] == keys[i]);
            }
        }
    }
}

template <class T, class I>
void test_route(std::mt19937_64& rng) {
    for (std::size_t shards : {1, 3, 4, 7}) {
        for (Ids kind : {Ids::uniform, Ids::zipf, Ids::sorted}) {
            const std::size_t V = 10'007;
            const fastembed::Divisor per_shard((V + shards - 1) / shards), modulo(shards);
            for (std::size_t n : {30'000, 300}) {  // distinct rows by marking, by sorting
                test_route_with<T, I>("route range", V, 9, n, shards, fastembed::RangePlacement{per_shard}, kind, rng);
                test_route_with<T, I>("route modulo", V, 9, n, shards, fastembed::ModuloPlacement{modulo}, kind, rng);
            }
        }
    }
    test_distinct_strategies<I>(rng);
    test_route_with<T, I>("route range, empty", 5, 3, 0, 4, fastembed::RangePlacement{fastembed::Divisor(2)},
                          Ids::uniform, rng);
}

template <class T, class I>
void test_optimizer_and_route_for(std::mt19937_64& rng) {
    test_sgd<T, I>(2000, 7, 20'000, Ids::zipf, rng);        // blocked reduction
    test_sgd<T, I>(300'000, 8, 60'000, Ids::uniform, rng);  // sorted runs
    test_sgd<T, I>(3000, 17, 20'000, Ids::heavy, rng);      // heavy runs cut into blocks
    test_sgd<T, I>(1, 5, 300, Ids::all_equal, rng);
    test_route<T, I>(rng);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20240611);
    test_optimizer_and_route_for<float, std::int32_t>(rng);
    test_optimizer_and_route_for<float, std::int64_t>(rng);
    test_optimizer_and_route_for<double, std::int32_t>(rng);
    test_optimizer_and_route_for<double, std::int64_t>(rng);
    test_divisor(rng);
    return finish("optimizer_route_tests");
}
