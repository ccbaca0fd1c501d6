// Forward of the embedding layer: out[i, :] = weight[ids[i], :].
#pragma once

#include <cstddef>

#include "kernels/check_ids.hpp"
#include "kernels/row_ops.hpp"
#include "kernels/thread_pool.hpp"

namespace fastembed {

// The copy alone, for ids that have already passed check_ids.
template <class T, class I>
void copy_rows(const T* weight, std::size_t dim, const I* ids, std::size_t n, T* out) {
    const std::size_t row_bytes = dim * sizeof(T);
    const std::size_t out_bytes = n * row_bytes;
    if (out_bytes == 0) return;
    const RowWriter writer(out_bytes, row_bytes);
    const std::size_t ahead = prefetch_distance(row_bytes);
    parallel_ranges(n, threads_for_bytes(2 * out_bytes + n * sizeof(I)),
                    [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            if (i + ahead < end) {
                prefetch_row(weight + static_cast<std::size_t>(ids[i + ahead]) * dim, row_bytes);
            }
            writer.copy(out + i * dim, weight + static_cast<std::size_t>(ids[i]) * dim, row_bytes);
        }
        writer.finish();
    });
}

template <class T, class I>
void gather_rows(const T* weight, std::size_t num_embeddings, std::size_t dim, const I* ids,
                 std::size_t n, T* out) {
    check_ids(ids, n, num_embeddings);
    copy_rows(weight, dim, ids, n, out);
}

}  // namespace fastembed
