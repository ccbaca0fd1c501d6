// C++ tests of the word2vec kernel alone (no Python): the alias table's distribution, the
// counter-based draws, and whole training runs bitwise identical for 1, 2 and 7 threads.
// Built with -DFASTEMBED_KERNEL_TESTS=ON (under ASan + UBSan with -DFASTEMBED_SANITIZE=ON).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/thread_pool.hpp"
#include "kernels/word2vec.hpp"

namespace {

int checks = 0;
int failures = 0;

void check(bool ok, const char* what) {
    ++checks;
    if (!ok) {
        ++failures;
        std::fprintf(stderr, "FAILED: %s\n", what);
    }
}

using namespace fastembed;

void test_alias_table() {
    const std::vector<double> weights{0.0, 1.0, 3.0, 0.5, 10.0, 0.0, 2.5};
    const word2vec::AliasTable table(weights.data(), weights.size());
    const std::size_t draws = 700000;
    std::vector<double> seen(weights.size(), 0);
    for (std::size_t i = 0; i < draws; ++i) ++seen[table.draw(word2vec::mix(i))];
    double total = 0;
    for (double w : weights) total += w;
    bool close = true;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const double expected = draws * weights[i] / total;
        close = close && std::abs(seen[i] - expected) <= 5 * std::sqrt(expected + 1);
    }
    check(close, "alias table draws follow the weights");
    check(seen[0] == 0 && seen[5] == 0, "alias table never draws a zero weight");
    bool refused = false;
    try {
        const std::vector<double> zeros(3, 0.0);
        word2vec::AliasTable bad(zeros.data(), zeros.size());
    } catch (const std::invalid_argument&) {
        refused = true;
    }
    check(refused, "alias table refuses all-zero weights");
}

void test_counter_based_draws() {
    using word2vec::Stream;
    const std::uint64_t a = word2vec::random_at(1, Stream::negative, 2, 3, 4);
    check(a == word2vec::random_at(1, Stream::negative, 2, 3, 4), "a draw depends on its key alone");
    check(a != word2vec::random_at(2, Stream::negative, 2, 3, 4), "seed changes draws");
    check(a != word2vec::random_at(1, Stream::keep, 2, 3, 4), "streams differ");
    check(a != word2vec::random_at(1, Stream::negative, 3, 3, 4), "epochs differ");
    check(a != word2vec::random_at(1, Stream::negative, 2, 4, 4), "positions differ");
}

// One epoch on a random corpus at `threads` threads; returns both tables.
std::vector<float> train(bool skip_gram, std::size_t threads) {
    set_num_threads(threads);
    const std::size_t vocab = 300, dim = 37, n = 6000;
    std::mt19937_64 rng(11);
    std::vector<std::int32_t> ids(n);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng() % vocab);
    std::vector<std::int64_t> bounds{0};
    while (bounds.back() < static_cast<std::int64_t>(n)) {
        bounds.push_back(std::min<std::int64_t>(static_cast<std::int64_t>(n), bounds.back() + 1 + rng() % 50));
    }
    std::vector<double> keep(vocab), weights(vocab);
    for (std::size_t w = 0; w < vocab; ++w) {
        keep[w] = 0.3 + 0.7 * (w % 5) / 4.0;
        weights[w] = 1.0 + w % 7;
    }
    std::vector<float> tables(2 * vocab * dim, 0.0f);
    for (std::size_t i = 0; i < vocab * dim; ++i) tables[i] = static_cast<float>(rng() % 1000) / 1000.0f - 0.5f;
    const word2vec::Tables<float> t{tables.data(), tables.data() + vocab * dim, vocab, dim};
    const word2vec::Corpus corpus{ids.data(), n, bounds.data(), bounds.size() - 1};
    word2vec::Settings s;
    s.skip_gram = skip_gram;
    s.window = 4;
    s.negative = 6;
    s.epochs = 1;
    s.batch_words = 97;
    const word2vec::AliasTable negatives(weights.data(), vocab);
    const std::size_t batches = (n + s.batch_words - 1) / s.batch_words;
    const word2vec::Stats stats = word2vec::train_batches(t, corpus, keep.data(), negatives, s, 0, 0, batches);
    check(stats.examples > 0 && std::isfinite(stats.loss), "training runs and reports a finite loss");
    return tables;
}

void test_thread_counts() {
    for (bool skip_gram : {true, false}) {
        const std::vector<float> one = train(skip_gram, 1);
        for (std::size_t threads : {2, 7}) {
            const std::vector<float> many = train(skip_gram, threads);
            check(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0,
                  skip_gram ? "skip-gram bitwise identical across thread counts"
                            : "CBOW bitwise identical across thread counts");
        }
    }
}

}  // namespace

int main() {
    test_alias_table();
    test_counter_based_draws();
    test_thread_counts();
    if (failures != 0) {
        std::fprintf(stderr, "word2vec_tests: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    std::printf("word2vec_tests: all %d checks passed\n", checks);
    return 0;
}
