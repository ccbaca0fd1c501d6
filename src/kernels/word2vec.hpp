// Word2vec training steps (skip-gram and CBOW with negative sampling) on fastembed's own
// mechanisms: CBOW contexts are pooled by the bag kernel (pool_rows, mean), and every update is
// a gradient reduced by id (reduce_by_id, reduce_bag_grad) and applied by the fused SGD sink.
//
// Batches: the corpus (in-vocabulary ids, sentence after sentence) is cut into batches of
// `batch_words` consecutive positions. A batch is trained in three phases:
//   A. every example of the batch (a (context, center) pair for skip-gram, a center and its
//      pooled context for CBOW) draws its negatives, computes its dot products, sigmoids and
//      coefficients g = (label - sigmoid) * alpha, and the error of its input row, reading the
//      tables as they were at the start of the batch (in parallel, each example on its own);
//   B. the output table (syn1neg) gets, for every target row, the sum of g * input over the
//      batch: a row source computes each term on the fly (BagGradRows), reduce_by_id sums them
//      in a fixed order and the SGD sink adds each sum to its row;
//   C. the input table (syn0) gets the sum of its errors the same way.
// So all updates of a batch see the same parameters, where gensim's threads apply each pair's
// update at once (and race on shared rows). With batches of a few hundred words the effect on
// quality is small (README: word2vec section); it is the price of determinism.
//
// Randomness is counter-based: every draw is a hash of (seed, stream, epoch, position(s)), so
// which words are kept, each window's reduction and each negative depend on the data alone.
// With batches that do not depend on the thread count and the deterministic reductions, the
// trained vectors are bitwise identical for any number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/bag.hpp"
#include "kernels/bag_backward.hpp"
#include "kernels/optimizers.hpp"
#include "kernels/reduce.hpp"
#include "kernels/row_source.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {
namespace word2vec {

// SplitMix64's finaliser: a bijection of 64-bit words whose outputs pass as independent.
inline std::uint64_t mix(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Independent random streams, one per kind of decision.
enum class Stream : std::uint64_t { keep = 1, window = 2, negative = 3 };

// The random word of (seed, stream, epoch, a, b): the same whoever asks, in whatever order.
inline std::uint64_t random_at(std::uint64_t seed, Stream stream, std::uint64_t epoch, std::uint64_t a,
                               std::uint64_t b = 0) {
    std::uint64_t h = mix(seed ^ (static_cast<std::uint64_t>(stream) << 56));
    h = mix(h ^ epoch);
    h = mix(h ^ a);
    return mix(h ^ b);
}

// A uniform double in [0, 1) from the top 53 bits.
inline double uniform(std::uint64_t r) { return static_cast<double>(r >> 11) * 0x1.0p-53; }

// Walker's alias table: draws index i with probability weights[i] / sum(weights) from one
// random word in O(1) (a binary search of gensim's cumulative table costs log2(V) dependent
// cache reads per negative). Built in double in a fixed order, so it is the same everywhere.
class AliasTable {
  public:
    AliasTable(const double* weights, std::size_t n) : accept_(n, 1.0), alias_(n) {
        double total = 0;
        for (std::size_t i = 0; i < n; ++i) total += weights[i];
        if (n == 0 || !(total > 0) || !std::isfinite(total)) {
            throw std::invalid_argument("negative sampling weights must have a positive finite sum");
        }
        std::vector<double> scaled(n);
        std::vector<std::uint32_t> small, large;
        for (std::size_t i = 0; i < n; ++i) {
            alias_[i] = static_cast<std::uint32_t>(i);
            scaled[i] = weights[i] * static_cast<double>(n) / total;
            (scaled[i] < 1.0 ? small : large).push_back(static_cast<std::uint32_t>(i));
        }
        while (!small.empty() && !large.empty()) {
            const std::uint32_t s = small.back();
            const std::uint32_t l = large.back();
            small.pop_back();
            accept_[s] = scaled[s];
            alias_[s] = l;
            scaled[l] -= 1.0 - scaled[s];
            if (scaled[l] < 1.0) {
                large.pop_back();
                small.push_back(l);
            }
        }
        // What is left has probability 1 up to rounding: accept_ stays 1 there.
    }

    std::uint32_t draw(std::uint64_t r) const {
        const auto slot = static_cast<std::uint32_t>(((r >> 32) * accept_.size()) >> 32);
        const double coin = static_cast<double>(r & 0xFFFFFFFFULL) * 0x1.0p-32;
        return coin < accept_[slot] ? slot : alias_[slot];
    }

  private:
    std::vector<double> accept_;
    std::vector<std::uint32_t> alias_;
};

// sigmoid(x) and log(sigmoid(x)) tabulated on [-6, 6] as in word2vec.c and gensim (beyond it
// the sigmoid is taken as 0 or 1): an exp per dot product would cost more than the dot itself.
class SigmoidTable {
  public:
    static constexpr double kMaxExp = 6.0;
    static constexpr std::size_t kSize = 1000;

    SigmoidTable() {
        for (std::size_t i = 0; i < kSize; ++i) {
            const double x = (static_cast<double>(i) / kSize * 2 - 1) * kMaxExp;
            sigmoid_[i] = 1.0 / (1.0 + std::exp(-x));
            log_sigmoid_[i] = -std::log1p(std::exp(-x));
        }
    }

    // The table slot of x, or -1 below the range and kSize above it.
    static std::ptrdiff_t slot(double x) {
        if (x <= -kMaxExp) return -1;
        if (x >= kMaxExp) return static_cast<std::ptrdiff_t>(kSize);
        return static_cast<std::ptrdiff_t>((x + kMaxExp) * (kSize / kMaxExp / 2));
    }
    double sigmoid(std::ptrdiff_t s) const { return s < 0 ? 0.0 : s >= std::ptrdiff_t(kSize) ? 1.0 : sigmoid_[s]; }
    // log(sigmoid(x)) for the slot of x, the end slots' values beyond the range.
    double log_sigmoid(std::ptrdiff_t s) const {
        return log_sigmoid_[static_cast<std::size_t>(std::clamp<std::ptrdiff_t>(s, 0, kSize - 1))];
    }

  private:
    double sigmoid_[kSize];
    double log_sigmoid_[kSize];
};

inline const SigmoidTable& sigmoid_table() {
    static const SigmoidTable table;
    return table;
}

// Dot product in eight interleaved partial sums added in a fixed order: one running sum makes
// every addition wait on the previous one, and the compiler may not reassociate it itself.
template <class T>
T dot(const T* __restrict a, const T* __restrict b, std::size_t n) {
    constexpr std::size_t kLanes = 8;
    T partial[kLanes] = {};
    std::size_t d = 0;
    for (; d + kLanes <= n; d += kLanes) {
        for (std::size_t lane = 0; lane < kLanes; ++lane) partial[lane] += a[d + lane] * b[d + lane];
    }
    for (std::size_t lane = 0; d < n; ++d, ++lane) partial[lane] += a[d] * b[d];
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
           ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

template <class T>
void axpy(T* __restrict y, T a, const T* __restrict x, std::size_t n) {
    for (std::size_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// The two tables: syn0 (the word vectors, the input side) and syn1neg (the output side).
template <class T>
struct Tables {
    T* syn0;
    T* syn1neg;
    std::size_t vocab;
    std::size_t dim;
};

// In-vocabulary ids, sentence after sentence: sentence s is ids[bounds[s], bounds[s + 1]).
// Ids must be below the vocabulary size; bounds non-decreasing from 0 to n.
struct Corpus {
    const std::int32_t* ids;
    std::size_t n;
    const std::int64_t* bounds;
    std::size_t num_sentences;
};

struct Settings {
    bool skip_gram = true;
    std::size_t window = 5;    // the largest reach on each side (each center draws 1..window)
    std::size_t negative = 5;  // negatives per positive example
    std::uint64_t seed = 1;
    double alpha = 0.025;      // learning rate at the start of training...
    double min_alpha = 1e-4;   // ...falling linearly to this at its end
    std::size_t epochs = 1;
    std::size_t batch_words = 256;  // corpus positions per batch
};

// What a run of batches did: the examples trained, their summed loss (-log likelihood of
// positives and negatives, from the tabulated log-sigmoid), the corpus words kept by subsampling.
struct Stats {
    double loss = 0;
    std::uint64_t examples = 0;
    std::uint64_t kept_words = 0;
};

// One batch's examples and scratch, reused from batch to batch.
template <class T>
struct Batch {
    // The words of the batch's sentences that subsampling kept, from `window` kept words before
    // the batch to `window` after it: their ids and corpus positions; kept sentence i is
    // [sentence_begin[i], sentence_begin[i + 1]) of them.
    std::vector<std::int32_t> kept_ids;
    std::vector<std::uint64_t> kept_positions;
    std::vector<std::size_t> sentence_begin;
    // Examples, each with the kept index of its center. Skip-gram: one per (context, center)
    // pair, input_ids[e] the context word at kept index input_index[e]. CBOW: one per center,
    // its context context_ids[context_bounds[e], context_bounds[e + 1]).
    std::vector<std::size_t> center;
    std::vector<std::int32_t> input_ids;
    std::vector<std::size_t> input_index;
    std::vector<std::int64_t> context_bounds;
    std::vector<std::int32_t> context_ids;
    // Per example: negative + 1 target rows and their coefficients g; the row each target's
    // update is g times (source_row: the input word's syn0 row for skip-gram, the example's
    // pooled context for CBOW); the example's input error and loss; the pooled contexts.
    std::vector<std::int32_t> targets;
    std::vector<T> coefficients;
    std::vector<std::uint32_t> source_row;
    std::vector<T> errors, pooled;
    std::vector<double> losses;
};

// Keeps corpus position p with probability keep_probability[ids[p]] (gensim's subsampling).
inline bool kept(const Corpus& corpus, const double* keep_probability, const Settings& s,
                 std::uint64_t epoch, std::size_t p) {
    const double q = keep_probability[corpus.ids[p]];
    return q >= 1.0 || uniform(random_at(s.seed, Stream::keep, epoch, p)) < q;
}

// Fills the batch's kept words and the examples whose centers are in positions [begin, end).
// Windows run over the kept words of a sentence (subsampled words are removed first, as in
// gensim), so they reach past the batch on both sides.
template <class T>
void collect_examples(const Corpus& corpus, const double* keep_probability, const Settings& s,
                      std::uint64_t epoch, std::size_t begin, std::size_t end, Batch<T>& batch) {
    batch.kept_ids.clear();
    batch.kept_positions.clear();
    batch.sentence_begin.clear();
    batch.center.clear();
    batch.input_ids.clear();
    batch.input_index.clear();
    batch.context_ids.clear();
    batch.context_bounds.assign(1, 0);

    const std::int64_t* bounds = corpus.bounds;
    auto sentence_start = [&](std::size_t sentence) { return static_cast<std::size_t>(bounds[sentence]); };
    std::size_t sentence = static_cast<std::size_t>(
        std::upper_bound(bounds, bounds + corpus.num_sentences + 1, static_cast<std::int64_t>(begin)) - bounds) - 1;
    // Start `window` kept words before `begin`, or at its sentence's start.
    std::size_t first = begin;
    for (std::size_t found = 0; first > sentence_start(sentence) && found < s.window;) {
        --first;
        found += kept(corpus, keep_probability, s, epoch, first);
    }
    std::size_t last_sentence = corpus.num_sentences;  // of the last kept word: none yet
    std::size_t kept_after_end = 0;
    std::vector<std::size_t> centers;
    for (std::size_t p = first; p < corpus.n; ++p) {
        while (sentence_start(sentence + 1) <= p) ++sentence;
        if (p >= end && (kept_after_end == s.window || sentence_start(sentence) >= end)) break;
        if (!kept(corpus, keep_probability, s, epoch, p)) continue;
        if (sentence != last_sentence) batch.sentence_begin.push_back(batch.kept_ids.size());
        last_sentence = sentence;
        if (p >= begin && p < end) centers.push_back(batch.kept_ids.size());
        kept_after_end += p >= end;
        batch.kept_ids.push_back(corpus.ids[p]);
        batch.kept_positions.push_back(p);
    }
    batch.sentence_begin.push_back(batch.kept_ids.size());

    std::size_t in_sentence = 0;  // the kept sentence of the current center
    for (const std::size_t c : centers) {
        while (batch.sentence_begin[in_sentence + 1] <= c) ++in_sentence;
        const std::size_t lo = batch.sentence_begin[in_sentence];
        const std::size_t hi = batch.sentence_begin[in_sentence + 1];
        // gensim's reduced window: reach = window - b, b uniform in [0, window).
        const std::size_t reach =
            s.window - random_at(s.seed, Stream::window, epoch, batch.kept_positions[c]) % s.window;
        const std::size_t from = c > lo + reach ? c - reach : lo;
        const std::size_t to = std::min(hi, c + reach + 1);
        if (to - from <= 1) continue;  // no context: nothing to learn from this word
        for (std::size_t j = from; j < to; ++j) {
            if (j == c) continue;
            if (s.skip_gram) {
                batch.center.push_back(c);
                batch.input_ids.push_back(batch.kept_ids[j]);
                batch.input_index.push_back(j);
            } else {
                batch.context_ids.push_back(batch.kept_ids[j]);
            }
        }
        if (!s.skip_gram) {
            batch.center.push_back(c);
            batch.context_bounds.push_back(static_cast<std::int64_t>(batch.context_ids.size()));
        }
    }
}

// Trains batches [first_batch, last_batch) of epoch `epoch` (0-based) and returns what they did.
// The learning rate of a batch falls linearly with the corpus position it starts at, over all
// epochs, from settings.alpha to settings.min_alpha. keep_probability and negative_weights have
// one entry per vocabulary word (negatives are drawn in proportion to negative_weights).
template <class T>
Stats train_batches(const Tables<T>& tables, const Corpus& corpus, const double* keep_probability,
                    const AliasTable& negatives, const Settings& s, std::uint64_t epoch,
                    std::size_t first_batch, std::size_t last_batch) {
    Stats stats;
    const std::size_t dim = tables.dim;
    const std::size_t slots = s.negative + 1;
    const SigmoidTable& sigmoid = sigmoid_table();
    const double total_words = static_cast<double>(corpus.n) * static_cast<double>(s.epochs);
    Batch<T> batch;
    for (std::size_t b = first_batch; b < last_batch; ++b) {
        const std::size_t begin = b * s.batch_words;
        const std::size_t end = std::min(corpus.n, begin + s.batch_words);
        if (begin >= end) break;
        const double progress = (static_cast<double>(epoch) * corpus.n + begin) / total_words;
        const double alpha = std::max(s.min_alpha, s.alpha - (s.alpha - s.min_alpha) * progress);

        collect_examples(corpus, keep_probability, s, epoch, begin, end, batch);
        for (std::size_t k = 0; k < batch.kept_positions.size(); ++k) {
            const std::uint64_t p = batch.kept_positions[k];
            stats.kept_words += p >= begin && p < end;
        }
        const std::size_t examples = s.skip_gram ? batch.input_ids.size() : batch.center.size();
        if (examples == 0 || dim == 0) continue;
        batch.targets.resize(examples * slots);
        batch.coefficients.resize(examples * slots);
        batch.errors.resize(examples * dim);
        batch.losses.resize(examples);
        const BagLayout contexts{batch.context_bounds.data(), examples};
        if (!s.skip_gram) {
            // The mean of each context's rows: the bag kernel's pooling.
            batch.pooled.resize(examples * dim);
            pool_rows(tables.syn0, tables.vocab, dim, batch.context_ids.data(), contexts, BagMode::mean,
                      static_cast<const T*>(nullptr), kNoPadding, batch.pooled.data(),
                      static_cast<std::int64_t*>(nullptr));
        }
        batch.source_row.resize(examples * slots);

        // Phase A: negatives, dots, coefficients and input errors, each example on its own.
        // The target rows are random reads of syn1neg that wait on memory (a dot product was
        // 38% of the time, nearly all of it in its first load), so each example's targets are
        // drawn and their rows prefetched kAhead examples before it is computed.
        constexpr std::size_t kAhead = 2;
        const std::size_t row_bytes = dim * sizeof(T);
        auto draw = [&](std::size_t e) {
            const std::size_t c = batch.center[e];
            std::uint64_t key;  // names the example: its center's position (and its context's)
            std::uint32_t source_row;
            if (s.skip_gram) {
                key = random_at(s.seed, Stream::negative, epoch, batch.kept_positions[c],
                                batch.kept_positions[batch.input_index[e]]);
                source_row = static_cast<std::uint32_t>(batch.input_ids[e]);
                prefetch_row(tables.syn0 + static_cast<std::size_t>(source_row) * dim, row_bytes);
            } else {
                key = random_at(s.seed, Stream::negative, epoch, batch.kept_positions[c]);
                source_row = static_cast<std::uint32_t>(e);
            }
            for (std::size_t k = 0; k < slots; ++k) {
                const std::int32_t target =
                    k == 0 ? batch.kept_ids[c] : static_cast<std::int32_t>(negatives.draw(mix(key + k)));
                batch.targets[e * slots + k] = target;
                batch.source_row[e * slots + k] = source_row;
                prefetch_row(tables.syn1neg + static_cast<std::size_t>(target) * dim, row_bytes);
            }
        };
        auto train_example = [&](std::size_t e) {
            const std::int32_t word = batch.targets[e * slots];
            const T* input = s.skip_gram ? tables.syn0 + static_cast<std::size_t>(batch.input_ids[e]) * dim
                                         : batch.pooled.data() + e * dim;
            T* error = batch.errors.data() + e * dim;
            std::fill(error, error + dim, T(0));
            double loss = 0;
            for (std::size_t k = 0; k < slots; ++k) {
                const std::size_t slot = e * slots + k;
                const std::int32_t target = batch.targets[slot];
                if (k != 0 && target == word) {  // a negative that is the word itself: skipped, as gensim
                    batch.coefficients[slot] = T(0);
                    continue;
                }
                const T* output = tables.syn1neg + static_cast<std::size_t>(target) * dim;
                const double x = static_cast<double>(dot(input, output, dim));
                const std::ptrdiff_t at = SigmoidTable::slot(x);
                const double label = k == 0 ? 1.0 : 0.0;
                const T g = static_cast<T>((label - sigmoid.sigmoid(at)) * alpha);
                batch.coefficients[slot] = g;
                axpy(error, g, output, dim);
                loss -= k == 0 ? sigmoid.log_sigmoid(at) : sigmoid.log_sigmoid(SigmoidTable::slot(-x));
            }
            batch.losses[e] = loss;
        };
        const std::size_t example_bytes = slots * row_bytes * 2;
        parallel_ranges(examples, threads_for_bytes(examples * example_bytes), [&](std::size_t, std::size_t lo, std::size_t hi) {
            for (std::size_t e = lo; e < std::min(hi, lo + kAhead); ++e) draw(e);
            for (std::size_t e = lo; e < hi; ++e) {
                if (e + kAhead < hi) draw(e + kAhead);
                train_example(e);
            }
        });
        for (std::size_t e = 0; e < examples; ++e) stats.loss += batch.losses[e];
        stats.examples += examples;

        // Phase B: syn1neg[t] += sum of g * input over the batch's targets t.
        const SgdUpdate<T> add_to_syn1{tables.syn1neg, nullptr, dim, T(-1), T(0), Rounding{}};
        UpdateSink<T, SgdUpdate<T>> syn1_sink(add_to_syn1, dim, GradOptions{});
        const BagGradRows<T, std::uint32_t> scaled_inputs(s.skip_gram ? tables.syn0 : batch.pooled.data(), dim,
                                                          batch.source_row.data(), nullptr,
                                                          batch.coefficients.data(), nullptr, nullptr);
        reduce_by_id(batch.targets.data(), examples * slots, tables.vocab, scaled_inputs, false, syn1_sink);

        // Phase C: syn0 += the errors. CBOW gives every context word its example's whole error
        // (a sum bag's backward), as word2vec.c and gensim do, not the mean's error / size.
        const SgdUpdate<T> add_to_syn0{tables.syn0, nullptr, dim, T(-1), T(0), Rounding{}};
        UpdateSink<T, SgdUpdate<T>> syn0_sink(add_to_syn0, dim, GradOptions{});
        if (s.skip_gram) {
            reduce_by_id(batch.input_ids.data(), examples, tables.vocab, GradRows<T>(batch.errors.data(), dim), false,
                         syn0_sink);
        } else {
            reduce_bag_grad(batch.errors.data(), dim, batch.context_ids.data(), tables.vocab, contexts, BagMode::sum,
                            static_cast<const T*>(nullptr), kNoPadding, nullptr, false, syn0_sink);
        }
    }
    return stats;
}

}  // namespace word2vec
}  // namespace fastembed
