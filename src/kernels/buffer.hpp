// Uninitialised scratch arrays for the kernels.
//
// std::vector would zero them first (a full extra pass over memory), and new T[] cannot report
// a size overflow. Large ones come from the recycled buffers: malloc hands arrays this size
// out as fresh pages, so the two 8 MiB sort buffers of a 1M-id backward cost ~3900 page faults
// each call (measured: 5 ms of its 36 ms at one thread), kept ones none.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#include "kernels/recycled_buffers.hpp"

namespace fastembed {

// From this size on scratch is recycled. Buffers come in whole 2 MiB huge pages and one is
// reused only for a request at least half its size, so anything smaller would take a fresh one.
inline constexpr std::size_t kMinRecycledScratchBytes = std::size_t{1} << 20;

namespace detail {

// Frees malloc'd memory (capacity 0) or hands a recycled buffer back.
struct ScratchDeleter {
    std::size_t capacity = 0;
    void operator()(void* p) const {
        if (capacity == 0) {
            std::free(p);
        } else {
            give_back_buffer({p, capacity});
        }
    }
};

}  // namespace detail

// An array of `size` uninitialised trivially-copyable T.
template <class T>
class ScratchArray {
    static_assert(std::is_trivially_copyable_v<T>, "scratch holds plain data only");

  public:
    explicit ScratchArray(std::size_t size) : data_(allocate(size)) {}

    T* get() const { return static_cast<T*>(data_.get()); }
    T& operator[](std::size_t i) const { return get()[i]; }
    void swap(ScratchArray& other) noexcept { data_.swap(other.data_); }

  private:
    using Owner = std::unique_ptr<void, detail::ScratchDeleter>;

    static Owner allocate(std::size_t size) {
        if (size == 0) return Owner(nullptr, detail::ScratchDeleter{});
        if (size > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
        const std::size_t bytes = size * sizeof(T);
        if (bytes >= kMinRecycledScratchBytes) {
            const Buffer buffer = take_buffer(bytes);
            return Owner(buffer.data, detail::ScratchDeleter{buffer.capacity});
        }
        void* p = std::malloc(bytes);
        if (p == nullptr) throw std::bad_alloc();
        return Owner(p, detail::ScratchDeleter{});
    }

    Owner data_;
};

}  // namespace fastembed
