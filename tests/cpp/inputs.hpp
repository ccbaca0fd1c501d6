// Inputs shared by the C++ kernel test programs (tests/cpp): ids of every distribution the
// kernels treat differently, table and gradient values, how a case is named in a failure, and
// the naive gather that several programs compare against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace fastembed_tests {

inline constexpr int kMaxThreads = 8;
inline constexpr float kSentinel = -12345.5f;

template <class T>
const char* type_name() {
    return sizeof(T) == 4 ? (std::is_integral_v<T> ? "int32" : "float32")
                          : (std::is_integral_v<T> ? "int64" : "float64");
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
bool all_sentinel(const std::vector<T>& a) {
    return std::all_of(a.begin(), a.end(), [](T x) { return x == static_cast<T>(kSentinel); });
}

// An output of `count` elements placed `lead` elements past a 64-byte cache line (place), in a
// buffer of sentinels with a line to spare on either side, so that a test can check that a
// kernel wrote nothing outside it (untouched_around). lead < one line.
template <class T>
class PlacedOutput {
  public:
    explicit PlacedOutput(std::size_t count) : count_(count), buffer_(count + 3 * kPerLine) {
        const auto base = reinterpret_cast<std::uintptr_t>(buffer_.data());
        first_line_ = buffer_.data() + ((kLine - base % kLine) % kLine) / sizeof(T);
    }

    // The output, `lead` elements past the second line of the buffer, everything sentinels.
    T* place(std::size_t lead) {
        std::fill(buffer_.begin(), buffer_.end(), static_cast<T>(kSentinel));
        out_ = first_line_ + kPerLine + lead;
        return out_;
    }

    // Whether every element before and after the output is still a sentinel.
    bool untouched_around() const {
        auto sentinel = [](T x) { return x == static_cast<T>(kSentinel); };
        return std::all_of(buffer_.data(), static_cast<const T*>(out_), sentinel) &&
               std::all_of(static_cast<const T*>(out_) + count_, buffer_.data() + buffer_.size(), sentinel);
    }

  private:
    static constexpr std::size_t kLine = 64;
    static constexpr std::size_t kPerLine = kLine / sizeof(T);
    std::size_t count_;
    std::vector<T> buffer_;
    T* first_line_;
    T* out_ = nullptr;
};

// --- inputs ------------------------------------------------------------------------------------

enum class Ids { uniform, zipf, heavy, all_equal, all_distinct, sorted, tiled };

inline const char* ids_name(Ids kind) {
    switch (kind) {
        case Ids::uniform: return "uniform";
        case Ids::zipf: return "zipf";
        case Ids::heavy: return "heavy";
        case Ids::all_equal: return "all_equal";
        case Ids::all_distinct: return "all_distinct";
        case Ids::sorted: return "sorted";
        case Ids::tiled: return "tiled";
    }
    return "?";
}

// n ids in [0, V). "heavy": uniform, then 60% of the positions given to one id and 20% to
// another (runs far longer than 2 * 4096 rows once n is in the tens of thousands), shuffled.
template <class I>
std::vector<I> make_ids(Ids kind, std::size_t n, std::size_t V, std::mt19937_64& rng) {
    std::vector<I> ids(n);
    std::uniform_int_distribution<std::uint64_t> uniform(0, V - 1);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (std::size_t i = 0; i < n; ++i) {
        switch (kind) {
            case Ids::uniform:
            case Ids::heavy:
            case Ids::sorted: ids[i] = static_cast<I>(uniform(rng)); break;
            // Roughly Zipf: id = floor(V^u) - 1 makes small ids exponentially more frequent.
            case Ids::zipf:
                ids[i] = static_cast<I>(
                    std::min<double>(V - 1, std::floor(std::pow(double(V), unit(rng))) - 1));
                break;
            case Ids::all_equal: ids[i] = static_cast<I>(V / 2); break;
            case Ids::all_distinct:
            case Ids::tiled: ids[i] = static_cast<I>(i % V); break;
        }
    }
    if (kind == Ids::heavy) {
        for (std::size_t i = 0; i < n * 6 / 10; ++i) ids[i] = static_cast<I>(V / 3);
        for (std::size_t i = n * 6 / 10; i < n * 8 / 10; ++i) ids[i] = static_cast<I>(V - 1);
        std::shuffle(ids.begin(), ids.end(), rng);
    }
    if (kind == Ids::all_distinct) std::shuffle(ids.begin(), ids.end(), rng);
    if (kind == Ids::sorted) std::sort(ids.begin(), ids.end());  // the sort's no-pass path
    return ids;
}

// Small integers as floats (every partial sum exact, so any summation order gives the same
// bits) or general values.
template <class T>
std::vector<T> make_values(std::size_t count, bool integers, std::mt19937_64& rng) {
    std::vector<T> values(count);
    std::uniform_int_distribution<int> small(-8, 8);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : values) v = integers ? static_cast<T>(small(rng)) : static_cast<T>(normal(rng));
    return values;
}


// "what float/int V=.. D=.. n=.. ids": the case printed with a failed CHECK.
template <class T, class I>
std::string describe(const char* what, std::size_t V, std::size_t dim, std::size_t n, Ids kind) {
    return std::string(what) + " " + type_name<T>() + "/" + type_name<I>() + " V=" + std::to_string(V) +
           " D=" + std::to_string(dim) + " n=" + std::to_string(n) + " " + ids_name(kind);
}

// The rows `ids` of a table of `dim` columns, copied one by one.
template <class T, class I>
std::vector<T> naive_gather(const std::vector<T>& weight, std::size_t dim, const std::vector<I>& ids) {
    std::vector<T> out(ids.size() * dim);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const T* row = weight.data() + static_cast<std::size_t>(ids[i]) * dim;
        std::copy(row, row + dim, out.begin() + i * dim);
    }
    return out;
}

}  // namespace fastembed_tests
