// Word2vec training: checks the tables and the corpus, then trains a range of batches of one
// epoch with the GIL released (kernels/word2vec.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/pooling_instances.hpp"
#include "kernels/word2vec.hpp"

namespace fastembed::bindings {

namespace {

// A 1-d C-contiguous array of T and `size` entries (any size when size is negative).
template <class T>
const T* vector_data(const py::array& array, const char* name, long long size, const char* dtype) {
    if (!py::isinstance<py::array_t<T>>(array)) {
        throw py::type_error(std::string(name) + " must be " + dtype + ", got " + dtype_name(array));
    }
    if (array.ndim() != 1 || (size >= 0 && array.shape(0) != size)) {
        throw py::value_error(std::string(name) + " must be 1-d" +
                              (size >= 0 ? " of length " + std::to_string(size) : std::string()) +
                              ", got shape " + shape_string(array));
    }
    require_layout(array, name, false);
    return static_cast<const T*>(array.data());
}

void require_positive(long long value, const char* name) {
    if (value < 1) throw py::value_error(std::string(name) + " must be at least 1, got " + std::to_string(value));
}

py::tuple train_batches(const py::array& syn0, const py::array& syn1neg, const py::array& corpus_ids,
                        const py::array& sentence_bounds, const py::array& keep_probability,
                        const py::array& negative_weights, bool skip_gram, long long window,
                        long long negative, std::uint64_t seed, double alpha, double min_alpha,
                        long long epochs, long long batch_words, long long epoch, long long first_batch,
                        long long last_batch) {
    if (syn0.ndim() != 2) throw py::value_error("syn0 must be 2-d (vocabulary, vector_size), got shape " + shape_string(syn0));
    if (syn1neg.ndim() != 2 || syn1neg.shape(0) != syn0.shape(0) || syn1neg.shape(1) != syn0.shape(1)) {
        throw py::value_error("syn1neg must have the shape of syn0 " + shape_string(syn0) + ", got " +
                              shape_string(syn1neg));
    }
    require_layout(syn0, "syn0", true);
    require_layout(syn1neg, "syn1neg", true);
    require_disjoint(syn0, "syn0", syn1neg, "syn1neg");
    const auto vocab = static_cast<std::size_t>(syn0.shape(0));
    if (vocab == 0 || vocab > std::numeric_limits<std::int32_t>::max()) {
        throw py::value_error("the vocabulary must have 1 to 2**31 - 1 words, got " + std::to_string(vocab));
    }
    require_positive(window, "window");
    require_positive(epochs, "epochs");
    require_positive(batch_words, "batch_words");
    if (negative < 0) throw py::value_error("negative must be >= 0, got " + std::to_string(negative));
    if (!(alpha >= 0) || !(min_alpha >= 0)) throw py::value_error("alpha and min_alpha must be >= 0");
    if (epoch < 0 || epoch >= epochs) {
        throw py::value_error("epoch must be in [0, epochs), got " + std::to_string(epoch));
    }
    const auto* ids = vector_data<std::int32_t>(corpus_ids, "corpus_ids", -1, "int32");
    const auto n = static_cast<std::size_t>(corpus_ids.shape(0));
    const auto* bounds = vector_data<std::int64_t>(sentence_bounds, "sentence_bounds", -1, "int64");
    const auto num_sentences = static_cast<std::size_t>(sentence_bounds.shape(0)) - 1;
    if (sentence_bounds.shape(0) < 1 || bounds[0] != 0 || bounds[num_sentences] != static_cast<std::int64_t>(n)) {
        throw py::value_error("sentence_bounds must run from 0 to len(corpus_ids) = " + std::to_string(n));
    }
    for (std::size_t s = 0; s < num_sentences; ++s) {
        if (bounds[s + 1] < bounds[s]) {
            throw py::value_error("sentence_bounds must be non-decreasing, got " + std::to_string(bounds[s]) +
                                  " before " + std::to_string(bounds[s + 1]));
        }
    }
    const auto* keep = vector_data<double>(keep_probability, "keep_probability", static_cast<long long>(vocab), "float64");
    const auto* weights = vector_data<double>(negative_weights, "negative_weights", static_cast<long long>(vocab), "float64");
    for (std::size_t w = 0; w < vocab; ++w) {
        if (!(weights[w] >= 0) || !std::isfinite(weights[w])) {
            throw py::value_error("negative_weights[" + std::to_string(w) + "] must be finite and >= 0");
        }
    }
    const auto batches = static_cast<long long>((n + batch_words - 1) / batch_words);
    if (first_batch < 0 || last_batch < first_batch || last_batch > batches) {
        throw py::value_error("batches [" + std::to_string(first_batch) + ", " + std::to_string(last_batch) +
                              ") are not within the corpus's " + std::to_string(batches));
    }
    // The ids the batches read: those of the sentences that hold their positions.
    const auto begin = static_cast<std::int64_t>(first_batch * batch_words);
    const auto end = std::min(static_cast<std::int64_t>(last_batch * batch_words), static_cast<std::int64_t>(n));
    if (begin < end) {
        const std::int64_t* first = std::upper_bound(bounds, bounds + num_sentences + 1, begin) - 1;
        const std::int64_t* last = std::lower_bound(bounds, bounds + num_sentences + 1, end);
        try {
            check_ids(ids + *first, static_cast<std::size_t>(*last - *first), vocab);
        } catch (const IdOutOfRange& e) {
            throw py::index_error(id_error_message(corpus_ids, e.position + static_cast<std::size_t>(*first), e.id, vocab));
        }
    }
    const word2vec::AliasTable negatives(weights, vocab);

    word2vec::Settings settings;
    settings.skip_gram = skip_gram;
    settings.window = static_cast<std::size_t>(window);
    settings.negative = static_cast<std::size_t>(negative);
    settings.seed = seed;
    settings.alpha = alpha;
    settings.min_alpha = min_alpha;
    settings.epochs = static_cast<std::size_t>(epochs);
    settings.batch_words = static_cast<std::size_t>(batch_words);
    const word2vec::Corpus corpus{ids, n, bounds, num_sentences};
    word2vec::Stats stats;
    dispatch_float(syn0, "syn0", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_dtype<T>(syn1neg, "syn1neg", "syn0");
        py::array table0 = syn0, table1 = syn1neg;  // new handles to the same arrays
        const word2vec::Tables<T> tables{static_cast<T*>(table0.mutable_data()),
                                         static_cast<T*>(table1.mutable_data()), vocab,
                                         static_cast<std::size_t>(syn0.shape(1))};
        py::gil_scoped_release release;
        stats = word2vec::train_batches(tables, corpus, keep, negatives, settings, static_cast<std::uint64_t>(epoch),
                                        static_cast<std::size_t>(first_batch), static_cast<std::size_t>(last_batch));
    });
    return py::make_tuple(stats.loss, stats.examples, stats.kept_words);
}

}  // namespace

void register_word2vec(py::module_& m) {
    m.def("word2vec_train_batches", &train_batches, py::arg("syn0"), py::arg("syn1neg"), py::arg("corpus_ids"),
          py::arg("sentence_bounds"), py::arg("keep_probability"), py::arg("negative_weights"), py::kw_only(),
          py::arg("skip_gram"), py::arg("window"), py::arg("negative"), py::arg("seed"), py::arg("alpha"),
          py::arg("min_alpha"), py::arg("epochs"), py::arg("batch_words"), py::arg("epoch"), py::arg("first_batch"),
          py::arg("last_batch"),
          "Trains batches [first_batch, last_batch) of one word2vec epoch in place; returns "
          "(loss, examples, kept_words).");
}

}  // namespace fastembed::bindings
