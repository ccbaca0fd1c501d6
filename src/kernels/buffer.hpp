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

namespace fastembed {

namespace detail {

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

}  // namespace detail

// An array of `size` uninitialised trivially-copyable T.
template <class T>
class ScratchArray {
    static_assert(std::is_trivially_copyable_v<T>, "scratch holds plain data only");

  public:
    explicit ScratchArray(std::size_t size) : data_(allocate(size)) {}

    T* get() const { return data_.get(); }
    T& operator[](std::size_t i) const { return data_.get()[i]; }
    void swap(ScratchArray& other) noexcept { data_.swap(other.data_); }

  private:
    static T* allocate(std::size_t size) {
        if (size == 0) return nullptr;
        if (size > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
        void* p = std::malloc(size * sizeof(T));
        if (p == nullptr) throw std::bad_alloc();
        return static_cast<T*>(p);
    }

    std::unique_ptr<T, detail::FreeDeleter> data_;
};

}  // namespace fastembed
