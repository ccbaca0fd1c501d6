// Uninitialised scratch arrays for the kernels.
//
// std::vector would zero them first (a full extra pass over memory), and new T[] cannot report
// a size overflow; plain malloc also lets glibc recycle the same pages from one call to the
// next instead of faulting in fresh ones.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastembed {

namespace detail {

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

}  // namespace detail

// `huge`: for a large result handed on to NumPy. glibc serves such sizes with fresh mmap'd
// pages on every call (they exceed its recycling threshold), and faulting them in 4 KiB at a
// time can cost more than the kernel itself; NumPy marks its own large arrays for transparent
// huge pages, and so do we (2 MiB aligned + MADV_HUGEPAGE, Linux only; a hint, never an error).
enum class Pages { normal, huge };

// An array of `size` uninitialised trivially-copyable T.
template <class T>
class ScratchArray {
    static_assert(std::is_trivially_copyable_v<T>, "scratch holds plain data only");

  public:
    explicit ScratchArray(std::size_t size, Pages pages = Pages::normal)
        : data_(allocate(size, pages)) {}

    T* get() const { return data_.get(); }
    T& operator[](std::size_t i) const { return data_.get()[i]; }
    void swap(ScratchArray& other) noexcept { data_.swap(other.data_); }
    // Hands the memory to the caller, who must std::free it.
    T* release() noexcept { return data_.release(); }

  private:
    static T* allocate(std::size_t size, Pages pages) {
        if (size == 0) return nullptr;
        if (size > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
        const std::size_t bytes = size * sizeof(T);
#if defined(__linux__)
        constexpr std::size_t kHugePage = std::size_t{2} << 20;
        if (pages == Pages::huge && bytes >= 2 * kHugePage) {
            void* p = nullptr;
            if (posix_memalign(&p, kHugePage, bytes) != 0) throw std::bad_alloc();
            madvise(p, (bytes + kHugePage - 1) / kHugePage * kHugePage, MADV_HUGEPAGE);
            return static_cast<T*>(p);
        }
#else
        (void)pages;
#endif
        void* p = std::malloc(bytes);
        if (p == nullptr) throw std::bad_alloc();
        return static_cast<T*>(p);
    }

    std::unique_ptr<T, detail::FreeDeleter> data_;
};

}  // namespace fastembed
