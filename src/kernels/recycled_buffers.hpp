// Large result and scratch buffers, recycled between calls.
//
// A fresh 256 MiB result costs more to fault in (the kernel zeroes every page on first touch)
// than the lookup that fills it. Training loops ask for same-sized results every step, so the
// buffers of results the caller has dropped are kept (up to a byte limit) and handed out again.
#pragma once

#include <cstddef>

namespace fastembed {

// Results smaller than this come from NumPy's allocator: their pages are cheap and recycled
// by malloc already.
inline constexpr std::size_t kMinRecycledBytes = std::size_t{4} << 20;

inline constexpr std::size_t kDefaultRecycledLimitBytes = std::size_t{1} << 30;

struct Buffer {
    void* data = nullptr;
    std::size_t capacity = 0;
};

// A buffer of at least `bytes`: a kept one no more than twice that size, else a new one (backed
// by transparent huge pages where the system offers them). Throws std::bad_alloc.
Buffer take_buffer(std::size_t bytes);

// Keeps `buffer` for a later take_buffer() if the limit allows, else frees it.
void give_back_buffer(Buffer buffer);

// Frees `buffer` now: for scratch no later result is likely to fit.
void free_buffer(Buffer buffer);

// Sets how many bytes of dropped buffers may be kept (0: none) and frees any excess; returns
// the previous limit.
std::size_t set_recycled_limit(std::size_t bytes);

}  // namespace fastembed
