// Range check of ids, done in full before any kernel writes a byte.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/thread_pool.hpp"

namespace fastembed {

// An id outside [0, num_embeddings): the first such one, by position in the flattened ids.
class IdOutOfRange : public std::out_of_range {
  public:
    IdOutOfRange(std::size_t position, std::int64_t id, std::size_t num_embeddings)
        : std::out_of_range("id " + std::to_string(id) + " at flat position " +
                            std::to_string(position) + " is out of range for num_embeddings=" +
                            std::to_string(num_embeddings)),
          position(position),
          id(id),
          num_embeddings(num_embeddings) {}

    std::size_t position;
    std::int64_t id;
    std::size_t num_embeddings;
};

namespace detail {

// The position of the first id in [begin, end) outside [0, limit), or `end`; limit < 2^63.
// A block of ids is scanned with one subtraction and two ORs per id, no comparison: an id is
// in range exactly when neither it nor limit - 1 - id (in 64-bit two's complement) is
// negative, so the OR of both over the block has its sign bit set exactly when some id is out
// of range. The compiler vectorises this even for SSE2, which has no 64-bit comparison; the
// comparison it replaced ran scalar, six instructions per id, and cost a pooled bag of 1M
// cached ids 18% of its time (2 threads, Zen 3). Only a block holding a bad id is scanned
// again, with that comparison (a negative id turns into a huge unsigned value, so one unsigned
// comparison catches both ends of the range), to find its position.
template <class I>
std::size_t first_bad_id(const I* ids, std::size_t begin, std::size_t end, std::uint64_t limit) {
    constexpr std::size_t kBlock = 1024;
    const std::uint64_t last_valid = limit - 1;  // all ones for an empty table: every id is bad
    for (std::size_t block = begin; block < end; block += kBlock) {
        const std::size_t stop = std::min(end, block + kBlock);
        std::uint64_t signs = 0;
        for (std::size_t i = block; i < stop; ++i) {
            const auto id = static_cast<std::uint64_t>(static_cast<std::int64_t>(ids[i]));
            signs |= id | (last_valid - id);
        }
        if ((signs >> 63) == 0) continue;
        for (std::size_t i = block; i < stop; ++i) {
            if (static_cast<std::uint64_t>(static_cast<std::int64_t>(ids[i])) >= limit) return i;
        }
    }
    return end;
}

}  // namespace detail

// Throws IdOutOfRange for the first id (lowest position) outside [0, num_embeddings).
template <class I>
void check_ids(const I* ids, std::size_t n, std::size_t num_embeddings) {
    const std::size_t threads = threads_for_bytes(n * sizeof(I));
    std::vector<std::size_t> first_bad(parts_for(threads), n);
    parallel_ranges(n, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        const std::size_t bad = detail::first_bad_id(ids, begin, end, num_embeddings);
        if (bad != end) first_bad[part] = bad;
    });
    const std::size_t bad = *std::min_element(first_bad.begin(), first_bad.end());
    if (bad < n) throw IdOutOfRange(bad, static_cast<std::int64_t>(ids[bad]), num_embeddings);
}

}  // namespace fastembed
