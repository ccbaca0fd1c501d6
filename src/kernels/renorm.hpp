// max_norm of PyTorch's embedding: before a lookup, every distinct looked-up row whose norm
// exceeds max_norm is scaled in place by max_norm / (norm + 1e-7), once per call however often
// its id occurs.
//
// Distinct ids come from the same radix sort the backward uses: a row is handled by the thread
// owning the start of its run, so no two threads touch a row and the result does not depend on
// the thread count. Norms are summed in double in a fixed order. All norms are computed before
// any row is written, so a read-only table is refused before anything changes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/half.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// A row needs renormalising but the table must not be written.
class RenormOfReadOnlyTable : public std::runtime_error {
  public:
    RenormOfReadOnlyTable(std::uint64_t id, double norm)
        : std::runtime_error("row " + std::to_string(id) + " needs renormalising"), id(id), norm(norm) {}

    std::uint64_t id;
    double norm;
};

// An element of a table of any storage (float16 and bfloat16 included) as a double.
template <class T>
double widened(T value) {
    return static_cast<double>(Element<T>::widen(value));
}

// Sum of term(row[d]) over the row in double, in four interleaved partial sums (element d goes
// to sum d % 4) added in a fixed order: one running sum made a norm wait on each addition in
// turn (a 64-wide row cost ~60 ns, most of a max_norm lookup's time).
template <class T, class Term>
double interleaved_sum(const T* row, std::size_t dim, Term term) {
    double partial[4] = {0.0, 0.0, 0.0, 0.0};
    std::size_t d = 0;
    for (; d + 4 <= dim; d += 4) {
        for (std::size_t lane = 0; lane < 4; ++lane) partial[lane] += term(widened(row[d + lane]));
    }
    for (std::size_t lane = 0; d < dim; ++d, ++lane) partial[lane] += term(widened(row[d]));
    return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

// The p-norm of a row (p > 0, or infinity for the largest magnitude).
template <class T>
double row_norm(const T* row, std::size_t dim, double p) {
    if (p == 2.0) return std::sqrt(interleaved_sum(row, dim, [](double x) { return x * x; }));
    if (p == 1.0) return interleaved_sum(row, dim, [](double x) { return std::fabs(x); });
    double acc = 0.0;
    if (std::isinf(p)) {
        for (std::size_t d = 0; d < dim; ++d) acc = std::fmax(acc, std::fabs(widened(row[d])));
        return acc;
    }
    for (std::size_t d = 0; d < dim; ++d) acc += std::pow(std::fabs(widened(row[d])), p);
    return std::pow(acc, 1.0 / p);
}

// Renormalises the rows of `weight` that `ids` (already checked) look up. `writeable` false:
// throws RenormOfReadOnlyTable for the lowest such id instead, having written nothing.
template <class T, class I>
void renorm_rows(T* weight, std::uint64_t num_embeddings, std::size_t dim, const I* ids,
                 std::size_t n, double max_norm, double norm_type, bool writeable) {
    if (n == 0 || dim == 0) return;
    struct Rescale {
        std::uint64_t id;
        double norm;
    };
    struct alignas(64) PartRescales {  // one cache line apart: no false sharing on push_back
        std::vector<Rescale> rows;
    };
    with_sorted_ids(ids, n, num_embeddings, [&](const auto& sorted) {
        const std::size_t threads =
            threads_for_bytes(n * (sizeof(I) + 16) + n * dim * sizeof(T));
        const std::size_t parts = parts_for(threads);
        std::vector<PartRescales> found(parts);
        // Rows are visited in id order but with gaps the hardware prefetcher does not bridge:
        // without prefetching, norms and rescales each waited on memory row by row.
        const std::size_t row_bytes = dim * sizeof(T);
        const std::size_t ahead = prefetch_distance(row_bytes, n * row_bytes);
        parallel_ranges(n, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
            for (std::size_t k = begin; k < end; ++k) {
                if (k + ahead < end) prefetch_row(weight + sorted.id(k + ahead) * dim, row_bytes);
                const std::uint64_t id = sorted.id(k);
                if (k > 0 && sorted.id(k - 1) == id) continue;  // not the start of its run
                const double norm = row_norm(weight + id * dim, dim, norm_type);
                if (norm > max_norm) found[part].rows.push_back({id, norm});
            }
        });
        if (!writeable) {
            for (const PartRescales& part : found) {  // parts in id order: the lowest id first
                if (!part.rows.empty()) throw RenormOfReadOnlyTable(part.rows[0].id, part.rows[0].norm);
            }
            return;
        }
        run_tasks(parts, [&](std::size_t part) {
            const std::vector<Rescale>& rows = found[part].rows;
            for (std::size_t r = 0; r < rows.size(); ++r) {
                if (r + ahead < rows.size()) prefetch_row(weight + rows[r + ahead].id * dim, row_bytes);
                const Rescale& rescale = rows[r];
                using A = accumulator_t<T>;
                const A scale = static_cast<A>(max_norm / (rescale.norm + 1e-7));
                T* row = weight + rescale.id * dim;
                for (std::size_t d = 0; d < dim; ++d) row[d] = Element<T>::narrow(Element<T>::widen(row[d]) * scale);
            }
        }, threads);
    });
}

}  // namespace fastembed
