// C++-only tests of the gather, the backward's reductions, the thread pool, the host's caches and
// the word2vec text files (no Python), compared against naive loops; the fused optimizer and
// the routing to shards are optimizer_route_tests.cpp, the pooled loop bag_tests.cpp. Built with
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
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/blocked_reduce.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/format_vectors.hpp"
#include "kernels/gather.hpp"
#include "kernels/host_caches.hpp"
#include "kernels/parse_vectors.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_source.hpp"
#include "kernels/runs.hpp"
#include "kernels/scatter.hpp"
#include "kernels/thread_pool.hpp"
#include "check.hpp"
#include "inputs.hpp"

namespace {

using fastembed::IdOutOfRange;

using namespace fastembed_tests;

// --- naive references ----------------------------------------------------------------------------

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

// Outputs just past the streaming threshold, starting at every offset into a cache line: rows
// of odd lengths (written through the cache), and rows of whole 16-byte units (streamed: a
// partial line at either end in 16-byte stores, the whole lines between in one store each where
// the CPU has them, AVX-512 four lines at a time: rows of 320 and 528 bytes hold whole groups
// and lines after them), each row checked and nothing written outside the output.
template <class T>
void test_gather_streaming_output() {
    std::mt19937_64 rng(7);
    const std::size_t V = 1000;
    for (const std::size_t row_bytes : {std::size_t{7} * sizeof(T), std::size_t{16}, std::size_t{48},
                                        std::size_t{64}, std::size_t{144}, std::size_t{256}, std::size_t{320},
                                        std::size_t{528}}) {
        const std::size_t dim = row_bytes / sizeof(T);
        const std::size_t n = fastembed::streaming_bytes() / row_bytes + 1000;
        const auto weight = make_values<T>(V * dim, false, rng);
        const auto ids = make_ids<std::int64_t>(Ids::uniform, n, V, rng);
        const auto expected = naive_gather(weight, dim, ids);
        PlacedOutput<T> output(n * dim);
        for (const std::size_t lead : {std::size_t{0}, std::size_t{1}, 16 / sizeof(T), 48 / sizeof(T)}) {
            current_case = "gather into a streaming output " + std::to_string(lead * sizeof(T)) +
                           " bytes past a line, rows of " + std::to_string(row_bytes) + " bytes " +
                           type_name<T>();
            for (std::size_t threads : {1, 3}) {
                fastembed::set_num_threads(threads);
                T* out = output.place(lead);
                fastembed::gather_rows(weight.data(), V, dim, ids.data(), n, out);
                CHECK(output.untouched_around());
                CHECK(std::memcmp(out, expected.data(), n * dim * sizeof(T)) == 0);
            }
        }
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

// Rows ahead per row size: the plan's rows of 256 bytes as bytes ahead (more rows for narrower
// rows, the plan's count for wider ones), at most the rows that fit in the window, or 16; none
// for a table that fits in the L2.
void test_prefetch_distance() {
    current_case = "prefetch distance per row size";
    using fastembed::CacheLevel;
    using fastembed::PrefetchPlan;
    const std::size_t window = 16 << 10;
    const PrefetchPlan zen{CacheLevel::l1, 16}, xeon{CacheLevel::l2, 64}, one{CacheLevel::l1, 1};
    const std::tuple<PrefetchPlan, std::size_t, std::size_t> cases[] = {
        {zen, 256, 16},   {zen, 128, 32},   {zen, 72, 56},    {zen, 36, 113},  {zen, 64, 64},
        {zen, 512, 16},   {zen, 1024, 16},  {zen, 4096, 16},  {xeon, 256, 64}, {xeon, 128, 128},
        {xeon, 72, 227},  {xeon, 36, 455},  {xeon, 512, 32},  {xeon, 2048, 16}, {one, 256, 1},
        {one, 128, 2},    {one, 4096, 1}};
    for (const auto& [plan, row_bytes, expected] : cases) {
        CHECK(plan.distance(row_bytes, window) == expected);
    }
    CHECK(zen.distance(128, 0) == 16);  // no window: 16 rows, the floor
    // A table that fits in the L2 is read without prefetching (0); a byte more, or a table of
    // unknown size, with.
    const std::size_t l2 = fastembed::unprefetched_table_bytes();
    CHECK(l2 == fastembed::host_caches().used.l2);
    CHECK(fastembed::prefetch_distance(256, 1024, l2) == 0);
    CHECK(fastembed::prefetch_distance(256, 1024, l2 + 1) > 0);
    CHECK(fastembed::prefetch_distance(256, 1024) > 0);
}

// FASTEMBED_PREFETCH's text to a plan and back, and a plan through the word that holds the plan
// in force: every level, distance and narrow level survives both.
void test_prefetch_plan_text() {
    current_case = "prefetch plan text and word";
    using fastembed::CacheLevel;
    using fastembed::PrefetchPlan;
    const std::pair<const char*, const char*> texts[] = {
        {"l1:32", "l1:32:l1"}, {"l2:1", "l2:1:l1"}, {"l2:256:l2", "l2:256:l2"}, {"l1:16:l2", "l1:16:l2"}};
    for (const auto& [text, written] : texts) {
        const std::optional<PrefetchPlan> plan = fastembed::parse_prefetch_plan(text);
        CHECK(plan.has_value() && fastembed::to_string(*plan) == written);
    }
    for (const char* bad : {"", "l3:16", "l1:0", "l1:257", "l1:", "l1:16:", "l1:16:l3", "l1:16:l2:",
                            "l1:16x", "l2:16:l1x", "l116", "l1:-4"}) {
        CHECK(!fastembed::parse_prefetch_plan(bad).has_value());
    }
    CHECK(!fastembed::parse_prefetch_plan(nullptr).has_value());
    const std::uint32_t in_force = fastembed::detail::current_prefetch_plan.load();
    for (CacheLevel wide : {CacheLevel::l1, CacheLevel::l2}) {
        for (CacheLevel narrow : {CacheLevel::l1, CacheLevel::l2}) {
            for (std::size_t rows : {1, 16, 256}) {
                const PrefetchPlan plan{wide, rows, narrow};
                fastembed::detail::current_prefetch_plan.store(fastembed::detail::pack(plan));
                CHECK(fastembed::prefetch_plan() == plan);
                CHECK(plan.level_for(128) == narrow && plan.level_for(129) == wide);
            }
        }
    }
    fastembed::detail::current_prefetch_plan.store(in_force);
}

// The range check's scan (sign bits of id | (limit - 1 - id), no comparison) against the
// comparison it replaced, at every boundary: ids just inside and outside [0, limit), the
// extremes of int64 and int32, empty and huge tables, and the bad id first, last and on either
// side of a block of the scan.
void test_first_bad_id() {
    current_case = "first_bad_id at the boundaries";
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
    const std::uint64_t limits[] = {0, 1, 2, 100, 1u << 31, std::uint64_t{1} << 62,
                                    static_cast<std::uint64_t>(kMax)};
    for (const std::uint64_t limit : limits) {
        const auto top = static_cast<std::int64_t>(limit);
        const std::int64_t probes[] = {0, 1, -1, top - 1, top, top < kMax ? top + 1 : top, kMax, kMin,
                                       std::numeric_limits<std::int32_t>::min(),
                                       std::numeric_limits<std::int32_t>::max()};
        for (const std::int64_t probe : probes) {
            for (const std::size_t position : {0, 1023, 1024, 2999}) {
                std::vector<std::int64_t> ids(3000, 0);
                for (std::size_t i = 0; i < ids.size() && limit > 0; ++i) {
                    ids[i] = static_cast<std::int64_t>(i % limit);
                }
                ids[position] = probe;
                std::size_t expected = ids.size();
                for (std::size_t i = 0; i < ids.size(); ++i) {
                    if (static_cast<std::uint64_t>(ids[i]) >= limit) {
                        expected = i;
                        break;
                    }
                }
                CHECK(fastembed::detail::first_bad_id(ids.data(), 0, ids.size(), limit) == expected);
                CHECK(fastembed::detail::first_bad_id(ids.data(), position, ids.size(), limit) ==
                      std::max(expected, position));
            }
        }
    }
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

}  // namespace

int main() {
    std::mt19937_64 rng(20240611);
    test_kernels_for<float, std::int32_t>(rng);
    test_kernels_for<float, std::int64_t>(rng);
    test_kernels_for<double, std::int32_t>(rng);
    test_kernels_for<double, std::int64_t>(rng);
    test_gather_streaming_output<float>();
    test_gather_streaming_output<double>();
    test_gather_order_choice();
    test_host_caches();
    test_first_bad_id();
    test_prefetch_distance();
    test_prefetch_plan_text();
    test_pool_exceptions_and_nesting();
    test_concurrent_callers();
    test_fork();
    test_word2vec_files<float>(rng);
    test_word2vec_files<double>(rng);
    return finish("kernel_tests");
}
