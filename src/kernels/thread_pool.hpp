// One persistent pool of std::threads shared by every kernel.
//
// Why not OpenMP or TBB: a wheel that links a second OpenMP runtime beside the one NumPy or
// PyTorch already loaded can deadlock or oversubscribe; plain threads have no such clash.
//
// Concurrency contract:
//  * Several callers (Python threads with the GIL released) may call run() at once; they take
//    turns on the pool, so every job gets all threads and no worker is shared between two jobs.
//  * A task that itself calls run() executes the inner job inline, so nesting never deadlocks.
//  * The first exception thrown by any task is rethrown on the caller once every task has stopped.
//  * After fork() the child re-creates its workers lazily (its copies of them do not exist).
#pragma once

#include <cstddef>
#include <functional>
#include <numeric>
#include <vector>

namespace fastembed {

// Number of CPUs this process may run on (its affinity mask), at least 1.
std::size_t available_cores();

// More threads than this only waste memory on stacks: no machine has that many cores to give.
inline constexpr std::size_t kMaxThreads = 1024;

// Threads a parallel job uses (the caller included); initially FASTEMBED_NUM_THREADS (at most
// kMaxThreads) or the cores.
std::size_t get_num_threads();

// Sets the thread count for later jobs (1 <= n <= kMaxThreads); waits for running jobs to finish.
void set_num_threads(std::size_t n);

// Runs task(i) for every i in [0, num_tasks) on up to `max_threads` threads (0: all of them),
// the calling thread included; returns when all have finished.
void run_tasks(std::size_t num_tasks, const std::function<void(std::size_t)>& task,
               std::size_t max_threads = 0);

// Bytes of memory traffic below which splitting a job across threads costs more than it saves.
inline constexpr std::size_t kMinBytesPerThread = std::size_t{1} << 17;  // 128 KiB

// How many threads a job that moves `bytes` of memory should use.
inline std::size_t threads_for_bytes(std::size_t bytes) {
    const std::size_t wanted = bytes / kMinBytesPerThread;
    const std::size_t limit = get_num_threads();
    return wanted < 1 ? 1 : (wanted < limit ? wanted : limit);
}

// Jobs are cut into more parts than threads, which threads claim as they free up: a thread that
// starts late then takes fewer parts instead of the caller waiting for its equal share. Waking
// a sleeping helper took ~0.45 ms on the 2-core development VM after 5 ms without calls (20 us
// back to back), and a 2-thread gather of 64k rows then took 1.1 ms against 0.9 ms at one
// thread; uneven parts (Zipf ids in a backward) are evened out the same way.
inline constexpr std::size_t kPartsPerThread = 4;

// How many parts a job for `threads` threads is cut into.
inline std::size_t parts_for(std::size_t threads) {
    return threads <= 1 ? 1 : threads * kPartsPerThread;
}

// Splits [0, n) into parts_for(threads) contiguous, nearly equal ranges and runs
// body(part, begin, end) for each on up to `threads` threads (a range may be empty).
template <class Body>
void parallel_ranges(std::size_t n, std::size_t threads, Body&& body) {
    const std::size_t parts = parts_for(threads);
    if (parts <= 1 || n <= 1) {
        body(std::size_t{0}, std::size_t{0}, n);
        return;
    }
    run_tasks(
        parts,
        [&](std::size_t part) { body(part, n * part / parts, n * (part + 1) / parts); },
        threads);
}

// The first pass of a parallel numbering: runs count(begin, end) for each part of
// parallel_ranges(n, threads, ...) and returns, for part p, the sum of the counts of the parts
// before it (one entry more: the total), so that a second pass over the same parts can number
// its items from there.
template <class Count>
std::vector<std::size_t> counts_before_parts(std::size_t n, std::size_t threads, Count&& count) {
    std::vector<std::size_t> before(parts_for(threads) + 1, 0);
    parallel_ranges(n, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        before[part + 1] = count(begin, end);
    });
    std::partial_sum(before.begin(), before.end(), before.begin());
    return before;
}

}  // namespace fastembed
