// C++-only tests of the kernels (no Python), compared against naive loops. Built with
// -DFASTEMBED_KERNEL_TESTS=ON; with -DFASTEMBED_SANITIZE=ON they run under ASan + UBSan, which is
// the point: every buffer below has exactly the size the kernel may touch, so a stray read or
// write past it is reported.
//
// Exit status: 0 when every CHECK held, 1 otherwise (each failure is printed with its case).

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "kernels/bag.hpp"
#include "kernels/bag_backward.hpp"
#include "kernels/blocked_reduce.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/format_vectors.hpp"
#include "kernels/gather.hpp"
#include "kernels/host_caches.hpp"
#include "kernels/half.hpp"
#include "kernels/optimizers.hpp"
#include "kernels/parse_vectors.hpp"
#include "kernels/quantize.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/route.hpp"
#include "kernels/row_source.hpp"
#include "kernels/runs.hpp"
#include "kernels/scatter.hpp"
#include "kernels/thread_pool.hpp"

namespace {

using fastembed::IdOutOfRange;

int failures = 0;
int checks = 0;
std::string current_case;  // printed with every failure

#define CHECK(condition)                                                                 \
    do {                                                                                 \
        ++checks;                                                                        \
        if (!(condition)) {                                                              \
            ++failures;                                                                  \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed in case [%s]\n", __FILE__,     \
                         __LINE__, #condition, current_case.c_str());                   \
        }                                                                                \
    } while (0)

constexpr int kMaxThreads = 8;
constexpr float kSentinel = -12345.5f;

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

// --- inputs ------------------------------------------------------------------------------------

enum class Ids { uniform, zipf, heavy, all_equal, all_distinct, sorted, tiled };

const char* ids_name(Ids kind) {
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

// --- naive references ----------------------------------------------------------------------------

template <class T, class I>
std::vector<T> naive_gather(const std::vector<T>& weight, std::size_t dim, const std::vector<I>& ids) {
    std::vector<T> out(ids.size() * dim);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const T* row = weight.data() + static_cast<std::size_t>(ids[i]) * dim;
        std::copy(row, row + dim, out.begin() + i * dim);
    }
    return out;
}

// `rows` (positions, increasing) summed in T one by one: a copy of the first, then additions.
template <class T>
std::vector<T> sum_in_order(const std::vector<T>& grad, std::size_t dim, const std::size_t* rows,
                            std::size_t count) {
    std::vector<T> sum(grad.begin() + rows[0] * dim, grad.begin() + (rows[0] + 1) * dim);
    for (std::size_t k = 1; k < count; ++k) {
        for (std::size_t d = 0; d < dim; ++d) sum[d] += grad[rows[k] * dim + d];
    }
    return sum;
}

// `parts` summed in order the same way.
template <class T>
std::vector<T> add_in_order(const std::vector<std::vector<T>>& parts) {
    std::vector<T> sum = parts.front();
    for (std::size_t p = 1; p < parts.size(); ++p) {
        for (std::size_t d = 0; d < sum.size(); ++d) sum[d] += parts[p][d];
    }
    return sum;
}

// The dense gradient with each id's sum taken in exactly the order the kernel documents, so the
// comparison can be bit for bit (a plain double sum is checked separately):
//  * blocked path (`blocks` > 0, positions cut into `blocks` equal ranges): each block's rows in
//    position order, then the block sums in block order;
//  * sorted-runs path (`blocks` == 0): rows in position order, except that a heavy run (one that
//    covers key k and k + block_rows for some multiple k of block_rows, in sorted order) is
//    summed in pieces of block_rows rows from its start, then the pieces in order.
template <class T, class I>
std::vector<T> naive_scatter(const std::vector<T>& grad, const std::vector<I>& ids, std::size_t V,
                             std::size_t dim, std::size_t blocks) {
    const std::size_t n = ids.size();
    std::vector<std::vector<std::size_t>> rows_of(V);
    for (std::size_t i = 0; i < n; ++i) rows_of[static_cast<std::size_t>(ids[i])].push_back(i);
    const std::size_t block_rows = fastembed::heavy_block_rows(dim);
    std::vector<T> out(V * dim, T(0));
    std::size_t run_begin = 0;  // where v's run starts among the sorted keys
    for (std::size_t v = 0; v < V; ++v) {
        const std::vector<std::size_t>& rows = rows_of[v];
        if (rows.empty()) continue;
        std::vector<std::vector<T>> parts;
        if (blocks > 0) {
            for (std::size_t b = 0, k = 0; b < blocks; ++b) {
                const std::size_t first = k;
                while (k < rows.size() && rows[k] < n * (b + 1) / blocks) ++k;
                if (k > first) parts.push_back(sum_in_order(grad, dim, rows.data() + first, k - first));
            }
        } else {
            const std::size_t run_end = run_begin + rows.size();
            const std::size_t sample = (run_begin + block_rows - 1) / block_rows * block_rows;
            const bool heavy = sample + block_rows < run_end;
            const std::size_t piece = heavy ? block_rows : rows.size();
            for (std::size_t k = 0; k < rows.size(); k += piece) {
                const std::size_t length = std::min(piece, rows.size() - k);
                parts.push_back(sum_in_order(grad, dim, rows.data() + k, length));
            }
        }
        const std::vector<T> sum = add_in_order(parts);
        std::copy(sum.begin(), sum.end(), out.begin() + v * dim);
        run_begin += rows.size();
    }
    return out;
}

// |got - exact| within the rounding bound of a sum of |terms| in T, exact sum in double.
template <class T, class I>
bool close_to_exact_sum(const std::vector<T>& got, const std::vector<T>& grad, const std::vector<I>& ids,
                        std::size_t V, std::size_t dim) {
    std::vector<double> exact(V * dim, 0.0), magnitude(V * dim, 0.0);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto v = static_cast<std::size_t>(ids[i]);
        for (std::size_t d = 0; d < dim; ++d) {
            exact[v * dim + d] += grad[i * dim + d];
            magnitude[v * dim + d] += std::fabs(double(grad[i * dim + d]));
        }
    }
    const double eps = std::numeric_limits<T>::epsilon();
    for (std::size_t k = 0; k < exact.size(); ++k) {
        if (std::fabs(double(got[k]) - exact[k]) > 16 * eps * magnitude[k] + 1e-30) return false;
    }
    return true;
}

// --- kernels under test, at a given thread count -------------------------------------------------

template <class T, class I>
std::vector<T> run_gather(const std::vector<T>& weight, std::size_t V, std::size_t dim,
                          const std::vector<I>& ids, std::size_t threads) {
    fastembed::set_num_threads(threads);
    std::vector<T> out(ids.size() * dim, static_cast<T>(kSentinel));
    fastembed::gather_rows(weight.data(), V, dim, ids.data(), ids.size(), out.data());
    return out;
}

template <class T, class I>
std::vector<T> run_scatter(const std::vector<T>& grad, const std::vector<I>& ids, std::size_t V,
                           std::size_t dim, std::size_t threads) {
    fastembed::set_num_threads(threads);
    std::vector<T> out(V * dim, static_cast<T>(kSentinel));
    fastembed::sorted_scatter_add(grad.data(), ids.data(), ids.size(), dim, V, out.data());
    return out;
}

// Blocks of the blocked path for this shape; 0: reduce_by_id takes the sorted-runs path.
template <class T>
std::size_t blocks_for(std::size_t n, std::size_t V, std::size_t dim) {
    return fastembed::position_blocks(n, V, dim * sizeof(T));
}

// The sorted-runs path alone, whatever reduce_by_id would pick for this shape.
template <class T, class I>
std::vector<T> sorted_runs_scatter(const std::vector<T>& grad, const std::vector<I>& ids, std::size_t V,
                                   std::size_t dim) {
    std::vector<T> out(V * dim, static_cast<T>(kSentinel));
    fastembed::DenseRowSink<T> sink(out.data(), V, dim, fastembed::GradOptions{});
    fastembed::with_sorted_ids(ids.data(), ids.size(), V, [&](const auto& sorted) {
        const auto plan = fastembed::plan_runs(sorted, V, dim, dim * sizeof(T), true);
        fastembed::reduce_runs(sorted, plan, fastembed::GradRows<T>(grad.data(), dim), sink);
    });
    return out;
}

// --- tests -------------------------------------------------------------------------------------

enum class Path { blocked, sorted_runs };

// "what float/int V=.. D=.. n=.. ids": the case printed with a failed CHECK.
template <class T, class I>
std::string describe(const char* what, std::size_t V, std::size_t dim, std::size_t n, Ids kind) {
    return std::string(what) + " " + type_name<T>() + "/" + type_name<I>() + " V=" + std::to_string(V) +
           " D=" + std::to_string(dim) + " n=" + std::to_string(n) + " " + ids_name(kind);
}

// Both orders of reading the table, whichever gather_rows would pick for this shape.
template <class T, class I>
void test_gather(std::size_t V, std::size_t dim, std::size_t n, Ids kind, std::mt19937_64& rng) {
    current_case = describe<T, I>("gather", V, dim, n, kind);
    const auto weight = make_values<T>(V * dim, false, rng);
    const auto ids = make_ids<I>(kind, n, V, rng);
    const auto expected = naive_gather(weight, dim, ids);
    for (std::size_t threads = 1; threads <= kMaxThreads; ++threads) {
        CHECK(same_bytes(run_gather(weight, V, dim, ids, threads), expected));
        std::vector<T> in_id_order(n * dim, static_cast<T>(kSentinel));
        fastembed::copy_rows_in_id_order(fastembed::RowCopy<T>({weight.data(), dim}, dim), V, dim, ids.data(), n,
                                         in_id_order.data());
        CHECK(same_bytes(in_id_order, expected));
    }
}

// Which order gather_rows picks: id order only for spread ids into a large table, with threads.
void test_gather_order_choice() {
    current_case = "gather order choice";
    std::mt19937_64 rng(11);
    const std::size_t row_bytes = 256;
    // A table at the in-order threshold (never allocated), at least 2^20 rows.
    const std::size_t threshold_rows = fastembed::in_order_table_bytes() / row_bytes;
    const std::size_t V = std::max<std::size_t>(threshold_rows, 1 << 20);
    const auto uniform = make_ids<std::int64_t>(Ids::uniform, V, V, rng);
    const auto zipf = make_ids<std::int64_t>(Ids::zipf, V, V, rng);
    const auto equal = make_ids<std::int64_t>(Ids::all_equal, V, V, rng);
    // Output addresses are only compared, never written: one on a cache line, one 16 bytes past.
    const auto* line = reinterpret_cast<const void*>(std::uintptr_t{1} << 12);
    const auto* past_line = reinterpret_cast<const void*>((std::uintptr_t{1} << 12) + 16);
    auto in_id_order = [&](const std::vector<std::int64_t>& ids, std::size_t n, std::size_t rows,
                           std::size_t bytes, const void* out = nullptr, std::size_t out_bytes = 0) {
        return fastembed::reads_in_id_order(ids.data(), n, rows, bytes, out == nullptr ? line : out,
                                            out_bytes == 0 ? bytes : out_bytes);
    };
    fastembed::set_num_threads(2);
    CHECK(in_id_order(uniform, V, V, row_bytes));
    CHECK(in_id_order(uniform, V / 2, V, row_bytes));
    CHECK(!in_id_order(uniform, V / 2 - 1, V, row_bytes));  // too few
    CHECK(!in_id_order(uniform, V, V, row_bytes / 2));      // rows
    CHECK(in_id_order(uniform, V, threshold_rows, row_bytes));
    CHECK(!in_id_order(uniform, V, threshold_rows - 1, row_bytes));  // table
    CHECK(!in_id_order(zipf, V, V, row_bytes));
    CHECK(!in_id_order(equal, V, V, row_bytes));
    CHECK(!in_id_order(uniform, V, V, row_bytes, past_line));           // output rows off the lines
    CHECK(!in_id_order(uniform, V, V, row_bytes, line, row_bytes + 16));  // or not whole lines
    CHECK(in_id_order(uniform, V, V, row_bytes, past_line, 1024));      // unless rows are 1 KiB
    CHECK(!in_id_order(uniform, V, V, row_bytes, past_line, 1008));
    CHECK(in_id_order(uniform, V, V, row_bytes, line, row_bytes / 2));    // float16 out of float32 rows
    fastembed::set_num_threads(1);
    CHECK(!in_id_order(uniform, V, V, row_bytes));
}

// The host's cache sizes: sysfs parsed, CPUID skipped, the environment's override (positive byte
// counts only), the L3 cap for a VM that sees a whole socket, and the fallbacks.
void test_host_caches() {
    current_case = "host caches";
    char dir_template[] = "/tmp/fastembed_sysfs_XXXXXX";
    const char* root = mkdtemp(dir_template);
    CHECK(root != nullptr);
    if (root == nullptr) return;
    const std::string dir(root);
    struct Level { const char* level; const char* type; const char* size; };
    const Level levels[] = {{"1", "Data", "48K"}, {"1", "Instruction", "64K"},
                            {"2", "Unified", "2048K"}, {"3", "Unified", "491520K"}};
    for (std::size_t i = 0; i < 4; ++i) {
        const std::string index = dir + "/index" + std::to_string(i);
        mkdir(index.c_str(), 0700);
        for (const auto& [name, text] : {std::pair<const char*, const char*>{"level", levels[i].level},
                                         {"type", levels[i].type}, {"size", levels[i].size}}) {
            std::FILE* file = std::fopen((index + "/" + name).c_str(), "w");
            std::fprintf(file, "%s\n", text);
            std::fclose(file);
        }
    }
    auto no_env = [](const char*) -> const char* { return nullptr; };
    const auto found = fastembed::detect_host_caches(no_env, 2, dir, false);
    CHECK(found.sysfs.l1d == 48 << 10 && found.sysfs.l2 == 2 << 20 && found.sysfs.l3 == std::size_t{480} << 20);
    CHECK(found.cpuid.l1d == 0 && found.cpuid.l3 == 0);
    CHECK(found.used.l1d == 48 << 10 && found.used.l2 == 2 << 20);
    CHECK(found.used.l3 == 2 * fastembed::kMaxL3BytesPerCore);  // 480 MiB for 2 cores: capped
    CHECK(found.source == "l1d=sysfs l2=sysfs l3=sysfs,capped");

    auto env = [](const char* name) -> const char* {
        const std::string key(name);
        if (key == "FASTEMBED_L2_BYTES") return "123456";
        if (key == "FASTEMBED_L3_BYTES") return "1073741824";
        if (key == "FASTEMBED_L1D_BYTES") return "32K";  // not a byte count: ignored
        return nullptr;
    };
    const auto overridden = fastembed::detect_host_caches(env, 2, dir, false);
    CHECK(overridden.used.l1d == 48 << 10 && overridden.used.l2 == 123456);
    CHECK(overridden.used.l3 == std::size_t{1} << 30);  // set by hand: not capped
    CHECK(overridden.source == "l1d=sysfs l2=env l3=env");

    auto bad = [](const char*) -> const char* { return "-5"; };
    const auto fallback = fastembed::detect_host_caches(bad, 2, dir + "/absent", false);
    CHECK(fallback.used.l1d == 32 << 10 && fallback.used.l2 == 512 << 10 && fallback.used.l3 == 4 << 20);
    CHECK(fallback.source == "l1d=fallback l2=fallback l3=fallback");

    // This host's: every size positive, none above what sysfs reports.
    const auto& host = fastembed::host_caches();
    CHECK(host.used.l1d > 0 && host.used.l2 > 0 && host.used.l3 > 0);
    if (host.sysfs.l2 != 0 && std::getenv("FASTEMBED_L2_BYTES") == nullptr) CHECK(host.used.l2 <= host.sysfs.l2);
    for (std::size_t i = 0; i < 4; ++i) {
        const std::string index = dir + "/index" + std::to_string(i);
        for (const char* name : {"level", "type", "size"}) std::remove((index + "/" + name).c_str());
        rmdir(index.c_str());
    }
    rmdir(dir.c_str());
}

// Out of place at an odd address: the streaming writer's unaligned head and tail.
template <class T>
void test_gather_unaligned_streaming_output() {
    current_case = std::string("gather into an unaligned streaming output ") + type_name<T>();
    std::mt19937_64 rng(7);
    // An output just past the streaming threshold.
    const std::size_t V = 1000, dim = 7, n = fastembed::streaming_bytes() / (dim * sizeof(T)) + 1000;
    const auto weight = make_values<T>(V * dim, false, rng);
    const auto ids = make_ids<std::int64_t>(Ids::uniform, n, V, rng);
    const auto expected = naive_gather(weight, dim, ids);
    for (std::size_t threads : {1, 3, 8}) {
        fastembed::set_num_threads(threads);
        // One extra element on each side, then the output starts one element in.
        std::vector<T> buffer(n * dim + 2, static_cast<T>(kSentinel));
        fastembed::gather_rows(weight.data(), V, dim, ids.data(), n, buffer.data() + 1);
        CHECK(buffer.front() == static_cast<T>(kSentinel));
        CHECK(buffer.back() == static_cast<T>(kSentinel));
        CHECK(std::memcmp(buffer.data() + 1, expected.data(), n * dim * sizeof(T)) == 0);
    }
}

template <class T, class I>
void test_scatter(std::size_t V, std::size_t dim, std::size_t n, Ids kind, Path path,
                  std::mt19937_64& rng) {
    current_case = describe<T, I>("scatter", V, dim, n, kind) +
                   (path == Path::blocked ? " blocked" : " sorted-runs");
    const auto ids = make_ids<I>(kind, n, V, rng);
    const std::size_t blocks = blocks_for<T>(n, V, dim);
    CHECK((blocks > 0) == (path == Path::blocked));
    for (const bool integers : {true, false}) {
        const auto grad = make_values<T>(n * dim, integers, rng);
        const auto first = run_scatter(grad, ids, V, dim, 1);
        CHECK(same_bytes(first, naive_scatter(grad, ids, V, dim, blocks)));
        CHECK(close_to_exact_sum(first, grad, ids, V, dim));
        if (n > 0) {
            CHECK(same_bytes(sorted_runs_scatter(grad, ids, V, dim), naive_scatter(grad, ids, V, dim, 0)));
        }
        for (std::size_t threads = 2; threads <= kMaxThreads; ++threads) {
            CHECK(same_bytes(run_scatter(grad, ids, V, dim, threads), first));
        }
    }
}

// GradOptions (PyTorch's padding_idx and scale_grad_by_freq, and accumulation into `out`):
// the plain sums of naive_scatter, then per row: the padding row is zero (accumulating: left as
// it was), a sum over `count` rows is divided by count in T, and accumulating adds the result to
// the row's previous value. Bit for bit, on both paths and for 1..8 threads.
template <class T, class I>
void test_scatter_options(std::size_t V, std::size_t dim, std::size_t n, Ids kind, std::mt19937_64& rng) {
    const auto ids = make_ids<I>(kind, n, V, rng);
    const auto grad = make_values<T>(n * dim, false, rng);
    const auto previous = make_values<T>(V * dim, false, rng);
    const std::size_t blocks = blocks_for<T>(n, V, dim);
    const auto sums = naive_scatter(grad, ids, V, dim, blocks);
    std::vector<std::size_t> count(V, 0);
    for (const I id : ids) ++count[static_cast<std::size_t>(id)];
    for (const bool accumulate : {false, true}) {
        for (const bool scale : {false, true}) {
            const std::uint64_t no_padding = fastembed::GradOptions::kNoPadding;
            for (const std::uint64_t padding : {no_padding, std::uint64_t(ids[0])}) {
                current_case = describe<T, I>("scatter options", V, dim, n, kind) +
                               (blocks ? " blocked" : " sorted-runs") + (accumulate ? " accumulate" : "") +
                               (scale ? " scale" : "") +
                               (padding != fastembed::GradOptions::kNoPadding ? " padding" : "");
                fastembed::GradOptions options;
                options.padding_idx = padding;
                options.scale_grad_by_freq = scale;
                options.accumulate = accumulate;
                std::vector<T> expected = accumulate ? previous : std::vector<T>(V * dim, T(0));
                for (std::size_t v = 0; v < V; ++v) {
                    if (count[v] == 0 || v == padding) continue;
                    for (std::size_t d = 0; d < dim; ++d) {
                        T value = sums[v * dim + d];
                        if (scale && count[v] > 1) value = value / static_cast<T>(count[v]);
                        expected[v * dim + d] = accumulate ? expected[v * dim + d] + value : value;
                    }
                }
                for (std::size_t threads = 1; threads <= kMaxThreads; threads += 3) {
                    fastembed::set_num_threads(threads);
                    std::vector<T> out =
                        accumulate ? previous : std::vector<T>(V * dim, static_cast<T>(kSentinel));
                    fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, out.data(), options);
                    CHECK(same_bytes(out, expected));
                }
            }
        }
    }
}

// A bad id: IdOutOfRange names the first one by position, and no output byte is written.
template <class T, class I>
void test_bad_ids(std::size_t n, std::vector<std::pair<std::size_t, std::int64_t>> bad) {
    current_case = std::string("bad ids ") + type_name<T>() + "/" + type_name<I>() +
                   " n=" + std::to_string(n) + " first bad at " + std::to_string(bad.front().first);
    const std::size_t V = 100, dim = 5;
    std::mt19937_64 rng(n);
    auto ids = make_ids<I>(Ids::uniform, n, V, rng);
    for (const auto& [position, id] : bad) ids[position] = static_cast<I>(id);
    const auto weight = make_values<T>(V * dim, false, rng);
    const auto grad = make_values<T>(n * dim, false, rng);
    for (std::size_t threads : {1, 2, 5, 8}) {
        fastembed::set_num_threads(threads);
        for (const bool backward : {false, true}) {
            std::vector<T> out(backward ? V * dim : n * dim, static_cast<T>(kSentinel));
            bool thrown = false;
            try {
                if (backward) {
                    fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, out.data());
                } else {
                    fastembed::gather_rows(weight.data(), V, dim, ids.data(), n, out.data());
                }
            } catch (const IdOutOfRange& e) {
                thrown = true;
                CHECK(e.position == bad.front().first);
                CHECK(e.id == bad.front().second);
                CHECK(e.num_embeddings == V);
                CHECK(std::string(e.what()).find(std::to_string(bad.front().second)) != std::string::npos);
            }
            CHECK(thrown);
            CHECK(all_sentinel(out));
        }
    }
}

template <class T, class I>
void test_degenerate_sizes() {
    current_case = std::string("degenerate sizes ") + type_name<T>() + "/" + type_name<I>();
    std::mt19937_64 rng(3);
    // Empty ids (a null pointer is what an empty vector may hand over): nothing read or written,
    // and a backward writes zeros.
    for (std::size_t V : {0, 1, 5}) {
        const std::vector<I> none;
        const std::vector<T> weight = make_values<T>(V * 3, false, rng);
        CHECK(run_gather(weight, V, 3, none, 4).empty());
        const auto grad = run_scatter(std::vector<T>{}, none, V, 3, 4);
        CHECK(std::all_of(grad.begin(), grad.end(), [](T x) { return x == T(0); }));
    }
    // Zero-width rows: nothing to write, yet ids are still checked.
    {
        const std::vector<I> ids{0, 2, 1};
        CHECK(run_gather(std::vector<T>{}, 3, 0, ids, 3).empty());
        CHECK(run_scatter(std::vector<T>{}, ids, 3, 0, 3).empty());
        bool thrown = false;
        try {
            run_gather(std::vector<T>{}, 2, 0, ids, 3);
        } catch (const IdOutOfRange& e) {
            thrown = e.position == 1;
        }
        CHECK(thrown);
    }
    // A one-row table with every id 0, and any id into an empty table.
    {
        const std::vector<I> zeros(5000, 0);
        const auto weight = make_values<T>(7, false, rng);
        CHECK(same_bytes(run_gather(weight, 1, 7, zeros, 8), naive_gather(weight, 7, zeros)));
        const auto grad = make_values<T>(5000 * 7, true, rng);
        const auto expected = naive_scatter(grad, zeros, 1, 7, blocks_for<T>(5000, 1, 7));
        CHECK(same_bytes(run_scatter(grad, zeros, 1, 7, 8), expected));
        bool thrown = false;
        try {
            run_gather(std::vector<T>{}, 0, 7, std::vector<I>{0}, 2);
        } catch (const IdOutOfRange& e) {
            thrown = e.position == 0 && e.num_embeddings == 0;
        }
        CHECK(thrown);
    }
}

// --- pooled lookups and a fused optimizer --------------------------------------------------------

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
        const std::size_t chunk = std::max<std::size_t>(fastembed::pooling_chunk_bytes() / (dim * sizeof(T)), 8);
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
        fastembed::copy_rows_in_position_order(rows, dim, ids.data(), n, direct.data());
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
void test_bags_and_optimizer_for(std::mt19937_64& rng) {
    // Bags of up to 0..3 ids (many empty), 0..40, 0..2000; D = 1, odd widths, long rows.
    for (std::size_t dim : {1, 7, 17, 64}) {
        test_embedding_bag<T, I>(1000, dim, 5000, 5000, 3, Ids::uniform, rng);
        test_embedding_bag<T, I>(1000, dim, 5000, 4990, 40, Ids::zipf, rng);
    }
    test_embedding_bag<T, I>(3000, 300, 20'000, 20'000, 2000, Ids::uniform, rng);
    test_embedding_bag<T, I>(50, 8, 3000, 3000, 40, Ids::all_equal, rng);  // every entry padding
    test_embedding_bag<T, I>(1, 3, 100, 100, 5, Ids::all_equal, rng);
    test_embedding_bag<T, I>(10, 4, 0, 0, 5, Ids::uniform, rng);  // no ids, no bags
    test_bag_chunks<T, I>(rng);

    test_sgd<T, I>(2000, 7, 20'000, Ids::zipf, rng);        // blocked reduction
    test_sgd<T, I>(300'000, 8, 60'000, Ids::uniform, rng);  // sorted runs
    test_sgd<T, I>(3000, 17, 20'000, Ids::heavy, rng);      // heavy runs cut into blocks
    test_sgd<T, I>(1, 5, 300, Ids::all_equal, rng);
    test_route<T, I>(rng);
}

template <class T, class I>
void test_kernels_for(std::mt19937_64& rng) {
    // gather: D = 1, D not a multiple of any SIMD width, rows longer than the 1 KiB prefetch.
    for (std::size_t dim : {1, 7, 17, 64, 300}) {
        for (Ids kind : {Ids::uniform, Ids::zipf, Ids::all_equal}) {
            test_gather<T, I>(1000, dim, 3000, kind, rng);
        }
    }
    test_gather<T, I>(1, 7, 100, Ids::all_equal, rng);
    test_gather<T, I>(50'000, 8, 50'000, Ids::all_distinct, rng);
    test_gather<T, I>(70'000, 9, 60'000, Ids::uniform, rng);  // buckets of the top 10 of 17 bits
    test_gather<T, I>(70'000, 9, 60'000, Ids::zipf, rng);
    test_gather<T, I>(70'000, 9, 60'000, Ids::sorted, rng);
    test_gather<T, I>(1 << 16, 2, 1 << 18, Ids::tiled, rng);  // equal power-of-two buckets

    // scatter_add, blocked path: V * D * sizeof(T) <= 8 MiB and at least 8 rows per id.
    for (std::size_t dim : {1, 7, 17, 64}) {
        for (Ids kind : {Ids::uniform, Ids::zipf}) {
            test_scatter<T, I>(2000, dim, 20'000, kind, Path::blocked, rng);
        }
    }
    test_scatter<T, I>(500, 3, 40'000, Ids::zipf, Path::blocked, rng);  // 16 blocks
    test_scatter<T, I>(1, 7, 3000, Ids::all_equal, Path::blocked, rng);
    test_scatter<T, I>(1, 1, 20'000, Ids::all_equal, Path::blocked, rng);
    test_scatter<T, I>(4, 17, 30'000, Ids::heavy, Path::blocked, rng);
    // Sorted-runs path: the gradient is larger than 8 MiB, or too few rows per id; heavy runs.
    for (std::size_t dim : {1, 7, 17}) {
        for (Ids kind : {Ids::uniform, Ids::zipf}) {
            test_scatter<T, I>(5000, dim, 20'000, kind, Path::sorted_runs, rng);
        }
    }
    test_scatter<T, I>(5000, 3, 5000, Ids::all_distinct, Path::sorted_runs, rng);
    test_scatter<T, I>(5000, 7, 20'000, Ids::sorted, Path::sorted_runs, rng);
    test_scatter<T, I>(300'000, 8, 60'000, Ids::sorted, Path::sorted_runs, rng);
    // A range repeated: every radix bucket holds the same power-of-two count (padded pass).
    test_scatter<T, I>(1 << 16, 3, 1 << 18, Ids::tiled, Path::sorted_runs, rng);
    test_scatter<T, I>(1024, 5, 1 << 18, Ids::tiled, Path::blocked, rng);  // and sorted runs
    test_scatter<T, I>(300'000, 8, 60'000, Ids::uniform, Path::sorted_runs, rng);  // two-pass sort
    test_scatter<T, I>(300'000, 8, 60'000, Ids::heavy, Path::sorted_runs, rng);
    test_scatter<T, I>(3000, 7, 20'000, Ids::heavy, Path::sorted_runs, rng);
    test_scatter<T, I>(3000, 300, 20'000, Ids::heavy, Path::sorted_runs, rng);  // block_rows = 2 * D

    // Ids out of range: first, middle, last; negative; exactly V; two bad ones (the first by
    // position is reported, even when another thread's range finds its bad id first).
    test_bad_ids<T, I>(1, {{0, 100}});
    test_bad_ids<T, I>(50'000, {{0, -1}});
    test_bad_ids<T, I>(50'000, {{25'000, 100}});
    test_bad_ids<T, I>(50'000, {{49'999, std::numeric_limits<I>::max()}});
    test_bad_ids<T, I>(50'000, {{40'000, std::numeric_limits<I>::min()}, {45'000, 101}});
    test_bad_ids<T, I>(200'000, {{123'457, -5}, {199'999, 100}});

    test_scatter_options<T, I>(2000, 7, 20'000, Ids::zipf, rng);       // blocked
    test_scatter_options<T, I>(5000, 17, 20'000, Ids::heavy, rng);     // sorted runs, heavy
    test_scatter_options<T, I>(300'000, 4, 30'000, Ids::uniform, rng); // sorted runs, streamed

    test_degenerate_sizes<T, I>();
}

// --- the pool -------------------------------------------------------------------------------------

void test_pool_exceptions_and_nesting() {
    current_case = "pool: exceptions and nesting";
    for (std::size_t threads = 1; threads <= kMaxThreads; ++threads) {
        fastembed::set_num_threads(threads);
        bool thrown = false;
        try {
            fastembed::run_tasks(64, [](std::size_t i) {
                if (i == 17) throw std::runtime_error("task 17");
            });
        } catch (const std::runtime_error& e) {
            thrown = std::string(e.what()) == "task 17";
        }
        CHECK(thrown);
        // Nested jobs run inline: every (outer, inner) pair exactly once.
        std::vector<std::atomic<int>> hits(32 * 32);
        fastembed::run_tasks(32, [&](std::size_t outer) {
            fastembed::run_tasks(32, [&](std::size_t inner) { ++hits[outer * 32 + inner]; });
        });
        CHECK(std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h == 1; }));
    }
}

// Eight caller threads at once, while a ninth keeps changing the thread count.
void test_concurrent_callers() {
    current_case = "pool: concurrent callers while the thread count changes";
    std::mt19937_64 rng(11);
    const std::size_t V = 3000, dim = 9, n = 40'000;
    const auto ids = make_ids<std::int64_t>(Ids::zipf, n, V, rng);
    const auto grad = make_values<float>(n * dim, false, rng);
    const auto weight = make_values<float>(V * dim, false, rng);
    fastembed::set_num_threads(4);
    std::vector<float> expected_grad(V * dim), expected_rows(n * dim);
    fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, expected_grad.data());
    fastembed::gather_rows(weight.data(), V, dim, ids.data(), n, expected_rows.data());

    std::atomic<int> mismatches{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> callers;
    for (int t = 0; t < 8; ++t) {
        callers.emplace_back([&] {
            std::vector<float> g(V * dim), rows(n * dim);
            for (int round = 0; round < 10; ++round) {
                fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, g.data());
                fastembed::gather_rows(weight.data(), V, dim, ids.data(), n, rows.data());
                if (g != expected_grad || rows != expected_rows) ++mismatches;
            }
        });
    }
    std::thread resizer([&] {
        for (std::size_t k = 0; !done; ++k) fastembed::set_num_threads(1 + k % kMaxThreads);
    });
    for (auto& caller : callers) caller.join();
    done = true;
    resizer.join();
    CHECK(mismatches == 0);
}

// fork() copies only the calling thread; the child must rebuild the pool and get the same result.
void test_fork() {
    current_case = "pool: fork after use";
    std::mt19937_64 rng(13);
    const std::size_t V = 2000, dim = 16, n = 40'000;
    const auto ids = make_ids<std::int32_t>(Ids::uniform, n, V, rng);
    const auto grad = make_values<double>(n * dim, false, rng);
    fastembed::set_num_threads(4);
    std::vector<double> expected(V * dim);
    fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, expected.data());
    const pid_t pid = fork();
    if (pid == 0) {
        std::vector<double> got(V * dim);
        fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, got.data());
        fastembed::set_num_threads(3);
        std::vector<double> again(V * dim);
        fastembed::sorted_scatter_add(grad.data(), ids.data(), n, dim, V, again.data());
        _exit(got == expected && again == expected ? 0 : 3);
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// word2vec text: rows of random bit patterns formatted and parsed back to the same bits, on 1
// and 3 threads; a truncated binary file and a bad row name their lines.
template <class T>
void test_word2vec_files(std::mt19937_64& rng) {
    using Bits = std::conditional_t<std::is_same_v<T, float>, std::uint32_t, std::uint64_t>;
    const std::size_t count = 300, dim = 7;
    std::vector<T> rows(count * dim);
    for (T& value : rows) {
        const auto bits = static_cast<Bits>(rng());
        std::memcpy(&value, &bits, sizeof(T));
        if (std::isnan(value)) value = T(0.5);  // "nan" reads back as one NaN pattern
    }
    std::vector<std::string> key_storage(count);
    std::vector<std::string_view> keys(count);
    for (std::size_t i = 0; i < count; ++i) keys[i] = key_storage[i] = "k" + std::to_string(i);
    const std::size_t threads_before = fastembed::get_num_threads();
    for (std::size_t threads : {1, 3}) {
        current_case = std::string("word2vec text, ") + (sizeof(T) == 4 ? "float" : "double") +
                       ", threads=" + std::to_string(threads);
        fastembed::set_num_threads(threads);
        const std::string text = std::to_string(count) + " " + std::to_string(dim) + "\n" +
                                 fastembed::format_text_rows(keys, rows.data(), dim);
        using fastembed::kNoLimit;
        const auto layout = fastembed::scan_text(text.data(), text.size(), false, kNoLimit);
        CHECK(layout.rows.size() == count && layout.dim == dim && layout.pending.empty());
        std::vector<T> parsed(count * dim);
        std::vector<fastembed::Span> spans(count);
        fastembed::parse_text_rows(text.data(), layout, parsed.data(), spans.data());
        CHECK(std::memcmp(parsed.data(), rows.data(), rows.size() * sizeof(T)) == 0);
        CHECK(text.substr(spans[5].offset, spans[5].size) == "k5");
        const std::string bad = "2 2\na 1 2\nb 1 x\n";
        const auto bad_layout = fastembed::scan_text(bad.data(), bad.size(), false, kNoLimit);
        std::vector<T> two(4);
        try {
            fastembed::parse_text_rows(bad.data(), bad_layout, two.data(), spans.data());
            CHECK(false);
        } catch (const fastembed::VectorsFileError& e) {
            CHECK(e.line == 3);
        }
        std::string binary = "1 3\nw ";
        binary.append(reinterpret_cast<const char*>(rows.data()), 2 * sizeof(float));
        try {
            fastembed::scan_binary(binary.data(), binary.size(), kNoLimit);
            CHECK(false);
        } catch (const fastembed::VectorsFileError& e) {
            CHECK(e.line == 2);
        }
    }
    fastembed::set_num_threads(threads_before);
}

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
// and without groups of 8 lanes (16 for 4-bit) and a tail.
template <unsigned Bits>
void test_quantize(std::size_t dim, std::mt19937_64& rng) {
    current_case = std::string(Bits == 8 ? "quantize 8-bit" : "quantize 4-bit") + ", dim " + std::to_string(dim);
    const std::size_t V = 300;
    std::vector<float> table = make_values<float>(V * dim, false, rng);
    for (std::size_t d = 0; d < dim; ++d) table[dim + d] = 2.5f;  // a constant row
    std::vector<std::uint8_t> packed(V * fastembed::packed_row_bytes(Bits, dim));
    fastembed::quantize_rows<Bits>(table.data(), V, dim, packed.data());
    const fastembed::QuantizedRows<Bits> rows(packed.data(), dim);
    std::vector<float> row(dim);
    for (std::size_t r = 0; r < V; ++r) {
        rows.load(r, 0, dim, row.data());
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
// is a zero of either sign, whose range overflows float32, or that hold subnormals.
template <unsigned Bits>
void test_pack_copies(std::size_t dim, std::mt19937_64& rng) {
    current_case = std::string(Bits == 8 ? "pack copies 8-bit" : "pack copies 4-bit") + ", dim " + std::to_string(dim);
    const std::size_t V = 64;
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
// 8 or 16 lanes) as a scalar
// reference: each element widened on its own (`element(id, d)`), the bag's rows added in
// position order. Widths cover the lane groups and the scalar tail (4-bit: even widths).
template <class Reader, class Element>
void test_reader_copies(const char* name, const Reader& rows, std::size_t V, Element element,
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
        for (std::size_t d = 0; d < dim; ++d) {
            float sum = 0.0f;
            for (std::size_t i = bags.begin(b); i < bags.end(b); ++i) {
                const float value = element(static_cast<std::size_t>(ids[i]), d);
                sum = i == bags.begin(b) ? value : sum + value;
            }
            expected[b * dim + d] = sum;
        }
    }
    // Into float32, and rounded once into float16 and bfloat16 outputs; chunks of 4 positions,
    // so that longer bags keep partial sums between chunks.
    auto check_output = [&](auto out_tag) {
        using Out = typename decltype(out_tag)::type;
        std::vector<Out> narrowed(expected.size());
        fastembed::narrow_row(narrowed.data(), expected.data(), expected.size());
        using Job = fastembed::detail::BagJob<Reader, std::int64_t, Out>;
        auto same = [&](auto copy) {
            std::vector<Out> out(bags.num_bags * dim, Out{});
            const Job job{rows, ids.data(), bags, nullptr, fastembed::kNoPadding, out.data(), nullptr, 4, 4};
            copy(job);
            return std::memcmp(out.data(), narrowed.data(), out.size() * sizeof(Out)) == 0;
        };
        auto pool = [](const Job& job) {
            return [&job](auto isa) FASTEMBED_INLINE_LAMBDA {
                fastembed::detail::pool_bags_in<fastembed::BagMode::sum, false, false>(isa, job, 0, job.bags.num_bags);
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

// The reader of `table` quantized to Bits, against each element dequantized on its own: its code
// (8-bit: a byte; 4-bit: the low nibble of its pair byte for even d, the high one for odd)
// times the row's scale plus its bias.
template <unsigned Bits>
void test_quantized_reader_copies(const char* name, const std::vector<float>& table, std::size_t V,
                                  std::size_t dim, std::mt19937_64& rng) {
    std::vector<std::uint8_t> packed(V * fastembed::packed_row_bytes(Bits, dim));
    fastembed::quantize_rows<Bits>(table.data(), V, dim, packed.data());
    const fastembed::QuantizedRows<Bits> rows(packed.data(), dim);
    test_reader_copies(name, rows, V, [&](std::size_t id, std::size_t d) {
        const auto* row = static_cast<const std::uint8_t*>(rows.row_address(id));
        float scale;
        float bias;
        rows.scale_bias(row, scale, bias);
        int code;
        if constexpr (Bits == 8) {
            code = row[d];
        } else {
            code = d % 2 == 0 ? row[d / 2] & 0x0F : row[d / 2] >> 4;
        }
        return static_cast<float>(code) * scale + bias;
    }, rng);
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
        test_reader_copies("float16 reader", fastembed::PlainRows<fastembed::Float16>(half.data(), dim), V,
                           [&](std::size_t id, std::size_t d) {
                               return fastembed::detail::half_to_float(half[id * dim + d].bits);
                           }, rng);
        test_reader_copies("bfloat16 reader", fastembed::PlainRows<fastembed::BFloat16>(brain.data(), dim), V,
                           [&](std::size_t id, std::size_t d) {
                               return fastembed::detail::bfloat16_to_float(brain[id * dim + d].bits);
                           }, rng);
        test_quantized_reader_copies<8>("8-bit reader", table, V, dim, rng);
        if (dim % 2 == 0) test_quantized_reader_copies<4>("4-bit reader", table, V, dim, rng);
    }
}

}  // namespace

int main() {
    std::mt19937_64 rng(20240611);
    test_kernels_for<float, std::int32_t>(rng);
    test_kernels_for<float, std::int64_t>(rng);
    test_kernels_for<double, std::int32_t>(rng);
    test_kernels_for<double, std::int64_t>(rng);
    test_bags_and_optimizer_for<float, std::int32_t>(rng);
    test_bags_and_optimizer_for<float, std::int64_t>(rng);
    test_bags_and_optimizer_for<double, std::int32_t>(rng);
    test_bags_and_optimizer_for<double, std::int64_t>(rng);
    test_gather_unaligned_streaming_output<float>();
    test_gather_unaligned_streaming_output<double>();
    test_gather_order_choice();
    test_divisor(rng);
    test_host_caches();
    test_pool_exceptions_and_nesting();
    test_concurrent_callers();
    test_fork();
    test_word2vec_files<float>(rng);
    test_word2vec_files<double>(rng);
    test_half_round_trip<fastembed::Float16>("float16 round trip");
    test_half_round_trip<fastembed::BFloat16>("bfloat16 round trip");
    test_half_rounding();
    test_narrow_lanes<fastembed::Float16>("float16 narrowing in lanes");
    test_narrow_lanes<fastembed::BFloat16>("bfloat16 narrowing in lanes");
    for (std::size_t dim : {10, 38}) {
        test_quantize<8>(dim, rng);
        test_quantize<4>(dim, rng);
    }
    for (std::size_t dim : {2, 10, 38, 64, 130}) {
        test_pack_copies<8>(dim, rng);
        test_pack_copies<4>(dim, rng);
    }
    test_reader_copies_all(rng);
    if (failures != 0) {
        std::fprintf(stderr, "kernel_tests: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    std::printf("kernel_tests: all %d checks passed\n", checks);
    return 0;
}
