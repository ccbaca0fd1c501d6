// The entry point of every backward: sums each id's gradient rows and hands them to a sink.
// The strategy (blocked streaming for cache-sized gradients, sorted runs otherwise) is chosen
// from the shape alone, so the thread count never changes which sums are computed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/blocked_reduce.hpp"
#include "kernels/radix_sort.hpp"
#include "kernels/row_source.hpp"
#include "kernels/runs.hpp"

namespace fastembed {

// For every id in [0, num_embeddings): sink.row(part, id, sum, count) with the sum of the
// source's rows at the positions i where ids[i] == id, in a fixed order (see runs.hpp for the
// sink contract, row_source.hpp for sources). The ids must already have passed check_ids.
template <class I, class Source, class Sink>
void reduce_by_id(const I* ids, std::size_t n, std::uint64_t num_embeddings, const Source& source,
                  bool visit_absent_ids, Sink& sink) {
    if (blocked_reduce(ids, n, num_embeddings, source, visit_absent_ids, sink)) return;
    using T = typename Source::value_type;
    with_sorted_ids(ids, n, num_embeddings, [&](const auto& sorted) {
        const RunPlan plan =
            plan_runs(sorted, num_embeddings, source.dim(), source.dim() * sizeof(T), visit_absent_ids);
        reduce_runs(sorted, plan, source, sink);
    });
}

// The plain lookup's backward: the gradient row of position i is grad[i * dim : (i + 1) * dim],
// summed in the arithmetic of its storage S.
template <class I, class S, class Sink>
void reduce_by_id(const I* ids, std::size_t n, std::uint64_t num_embeddings, const S* grad,
                  std::size_t dim, bool visit_absent_ids, Sink& sink) {
    reduce_by_id(ids, n, num_embeddings, GradRows<S>(grad, dim), visit_absent_ids, sink);
}

}  // namespace fastembed
