// The entry point of every backward: sums each id's gradient rows and hands them to a sink,
// choosing between two strategies that give bitwise-identical sums.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/counting_reduce.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/runs.hpp"

namespace fastembed {

// For every id in [0, num_embeddings): sink.row(part, id, sum, count) with the sum of the rows
// grad[i] where ids[i] == id, added in position order (see runs.hpp for the sink contract).
// The ids must already have passed check_ids.
template <class I, class T, class Sink>
void reduce_by_id(const I* ids, std::size_t n, std::uint64_t num_embeddings, const T* grad,
                  std::size_t dim, bool visit_absent_ids, Sink& sink) {
    if (counting_reduce(ids, n, num_embeddings, grad, dim, visit_absent_ids, sink)) return;
    with_sorted_ids(ids, n, num_embeddings, [&](const auto& sorted) {
        const RunPlan plan = plan_runs(sorted, num_embeddings, dim, dim * sizeof(T), visit_absent_ids);
        reduce_runs(sorted, plan, grad, dim, sink);
    });
}

}  // namespace fastembed
