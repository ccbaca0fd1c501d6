#include "kernels/recycled_buffers.hpp"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastembed {

namespace {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

struct Recycler {
    std::mutex mutex;
    std::vector<Buffer> kept;  // oldest first
    std::size_t kept_bytes = 0;
    std::size_t limit = kDefaultRecycledLimitBytes;

    // Frees the oldest kept buffers until `incoming` more bytes fit under the limit.
    std::vector<Buffer> evict_for(std::size_t incoming) {
        std::vector<Buffer> evicted;
        while (!kept.empty() && kept_bytes + incoming > limit) {
            evicted.push_back(kept.front());
            kept_bytes -= kept.front().capacity;
            kept.erase(kept.begin());
        }
        return evicted;
    }
};

Recycler& recycler() {
    static Recycler* instance = new Recycler();  // never destroyed: results may outlive exit
    return *instance;
}

#if defined(__unix__) || defined(__APPLE__)
// Kernels take scratch while other threads may fork: a child must not inherit the mutex locked
// by a thread that does not exist in it.
void prepare_fork() { recycler().mutex.lock(); }
void parent_after_fork() { recycler().mutex.unlock(); }
void child_after_fork() { new (&recycler().mutex) std::mutex(); }

const bool fork_handlers_installed = [] {
    recycler();
    return pthread_atfork(prepare_fork, parent_after_fork, child_after_fork) == 0;
}();
#endif

Buffer allocate(std::size_t bytes) {
    const std::size_t capacity = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* data = std::aligned_alloc(kHugePageBytes, capacity);
    if (data == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(data, capacity, MADV_HUGEPAGE);  // a hint: failure only costs speed
#endif
    return {data, capacity};
}

void release(const std::vector<Buffer>& buffers) {
    for (const Buffer& buffer : buffers) std::free(buffer.data);
}

}  // namespace

Buffer take_buffer(std::size_t bytes) {
    Recycler& r = recycler();
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        // The smallest that fits; among equals the most recently dropped, whose pages are
        // likeliest still in the cache and the TLB.
        auto best = r.kept.rend();
        for (auto it = r.kept.rbegin(); it != r.kept.rend(); ++it) {
            const bool fits = it->capacity >= bytes && it->capacity / 2 <= bytes;
            if (fits && (best == r.kept.rend() || it->capacity < best->capacity)) best = it;
        }
        if (best != r.kept.rend()) {
            const Buffer found = *best;
            r.kept.erase(std::next(best).base());
            r.kept_bytes -= found.capacity;
            return found;
        }
    }
    return allocate(bytes);
}

void give_back_buffer(Buffer buffer) {
    Recycler& r = recycler();
    std::vector<Buffer> evicted;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        if (buffer.capacity <= r.limit) {
            evicted = r.evict_for(buffer.capacity);
            r.kept.push_back(buffer);
            r.kept_bytes += buffer.capacity;
            buffer = {};
        }
    }
    release(evicted);
    std::free(buffer.data);
}

void free_buffer(Buffer buffer) { std::free(buffer.data); }

std::size_t set_recycled_limit(std::size_t bytes) {
    Recycler& r = recycler();
    std::vector<Buffer> evicted;
    std::size_t previous;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        previous = r.limit;
        r.limit = bytes;
        evicted = r.evict_for(0);
    }
    release(evicted);
    return previous;
}

}  // namespace fastembed
