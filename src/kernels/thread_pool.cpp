#include "kernels/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#elif defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastembed {
namespace {

// FASTEMBED_NUM_THREADS if it is a positive decimal number (digits only), else the cores.
std::size_t threads_from_environment() {
    const char* text = std::getenv("FASTEMBED_NUM_THREADS");
    if (text != nullptr && *text != '\0') {
        std::size_t value = 0;
        const char* c = text;
        for (; *c >= '0' && *c <= '9' && value < 100000; ++c) value = value * 10 + (*c - '0');
        if (*c == '\0' && value >= 1) return std::min(value, kMaxThreads);
    }
    return available_cores();
}

thread_local bool inside_pool_task = false;

// Keeps the pool's helpers off the CPU of the thread that hands them a job. Some schedulers wake
// a thread on the CPU of the thread that woke it even while another CPU idles (the 2-core
// development VM does, after a few ms without a job), and there the helper only takes turns
// with its caller: after 30 ms pauses a 2-thread 8-bit bag of 1M Zipf ids took 8.5-10.3 ms,
// against 7.5-7.7 with the helper kept off the caller's CPU (in-process A/B; back to back, no
// change beyond the noise). So each helper may run on the CPUs the pool's creator could, less
// the caller's current one; the masks change only when the caller has moved (one sched_getcpu
// per job, a syscall per helper after a move). FASTEMBED_HELPER_AFFINITY=0 leaves helpers where
// the OS puts them.
class HelperPlacement {
  public:
    // Called by the thread that starts the helpers (they inherit its CPUs).
    void start() {
        avoided_ = -1;
#if defined(__linux__)
        const char* setting = std::getenv("FASTEMBED_HELPER_AFFINITY");
        enabled_ = !(setting != nullptr && std::strcmp(setting, "0") == 0) &&
                   sched_getaffinity(0, sizeof(allowed_), &allowed_) == 0 && CPU_COUNT(&allowed_) > 1;
#endif
    }

    // Called by a job's caller before it wakes `helpers`.
    void avoid_caller(std::vector<std::thread>& helpers) {
#if defined(__linux__)
        if (!enabled_) return;
        const int cpu = sched_getcpu();
        if (cpu < 0 || cpu == avoided_) return;
        cpu_set_t others = allowed_;
        if (cpu < CPU_SETSIZE) CPU_CLR(cpu, &others);
        if (CPU_COUNT(&others) == 0) others = allowed_;
        for (auto& helper : helpers) pthread_setaffinity_np(helper.native_handle(), sizeof(others), &others);
        avoided_ = cpu;
#else
        (void)helpers;
#endif
    }

  private:
    int avoided_ = -1;  // the CPU the helpers' masks leave out, -1 for none
#if defined(__linux__)
    bool enabled_ = false;
    cpu_set_t allowed_;
#endif
};

class ThreadPool {
  public:
    ThreadPool() : num_threads_(threads_from_environment()) {}

    // Deliberately never destroyed: joining at interpreter exit can race with a dying process.
    static ThreadPool& instance() {
        static ThreadPool* pool = new ThreadPool();
        return *pool;
    }

    std::size_t num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

    void set_num_threads(std::size_t n) {
        std::lock_guard<std::mutex> turn(turn_);
        stop_workers();
        num_threads_.store(std::clamp<std::size_t>(n, 1, kMaxThreads), std::memory_order_relaxed);
    }

    void run(std::size_t num_tasks, const std::function<void(std::size_t)>& task,
             std::size_t max_threads) {
        if (num_tasks == 0) return;
        std::size_t threads = num_threads();
        if (max_threads != 0 && max_threads < threads) threads = max_threads;
        if (threads > num_tasks) threads = num_tasks;
        if (threads <= 1 || inside_pool_task) {
            for (std::size_t i = 0; i < num_tasks; ++i) task(i);
            return;
        }

        std::lock_guard<std::mutex> turn(turn_);
        start_workers();
        placement_.avoid_caller(*workers_);
        Job job{&task, num_tasks};
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &job;
            helpers_wanted_ = threads - 1;
            ++generation_;
        }
        wake_.notify_all();
        work_on(job);
        {
            // No task is left to claim, so helpers that have not woken up yet are not needed; the
            // job lives on this stack frame, so wait until no worker can still touch it.
            std::unique_lock<std::mutex> lock(mutex_);
            helpers_wanted_ = 0;
            done_.wait(lock, [&] { return job.helpers_inside == 0; });
            job_ = nullptr;
        }
        if (job.error) std::rethrow_exception(job.error);
    }

    // fork() copies only the calling thread: the child must forget the parent's workers.
    void forget_workers_after_fork() {
        new (&turn_) std::mutex();
        new (&mutex_) std::mutex();
        new (&wake_) std::condition_variable();
        new (&done_) std::condition_variable();
        workers_.release();  // leaked on purpose: those threads do not exist in the child
        job_ = nullptr;
        helpers_wanted_ = 0;
        stopping_ = false;
    }

    void lock_for_fork() { turn_.lock(); }
    void unlock_after_fork() { turn_.unlock(); }

  private:
    struct Job {
        const std::function<void(std::size_t)>* task;
        std::size_t num_tasks;
        std::atomic<std::size_t> next{0};
        std::size_t helpers_inside = 0;  // guarded by mutex_
        std::exception_ptr error;         // guarded by error_mutex
        std::mutex error_mutex;
        std::atomic<bool> failed{false};

        Job(const std::function<void(std::size_t)>* t, std::size_t n) : task(t), num_tasks(n) {}
    };

    static void work_on(Job& job) {
        const bool was_inside = inside_pool_task;
        inside_pool_task = true;
        for (;;) {
            const std::size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
            if (i >= job.num_tasks) break;
            if (job.failed.load(std::memory_order_relaxed)) continue;
            try {
                (*job.task)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(job.error_mutex);
                if (!job.error) job.error = std::current_exception();
                job.failed.store(true, std::memory_order_relaxed);
            }
        }
        inside_pool_task = was_inside;
    }

    void worker_loop() {
        std::uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && helpers_wanted_ > 0); });
            if (stopping_) return;
            seen = generation_;
            --helpers_wanted_;
            Job& job = *job_;
            ++job.helpers_inside;
            lock.unlock();
            work_on(job);
            lock.lock();
            --job.helpers_inside;
            if (job.helpers_inside == 0) done_.notify_all();
        }
    }

    // Caller holds turn_.
    void start_workers() {
        const std::size_t wanted = num_threads() - 1;
        if (workers_ && workers_->size() == wanted) return;
        stop_workers();
        workers_ = std::make_unique<std::vector<std::thread>>();
        workers_->reserve(wanted);
        for (std::size_t i = 0; i < wanted; ++i) {
            workers_->emplace_back([this] { worker_loop(); });
#if defined(__linux__)
            // For top, perf and the tests; named here, not by the worker when it first runs,
            // which on a busy host can be after the caller has done the whole first job.
            pthread_setname_np(workers_->back().native_handle(), "fastembed");
#endif
        }
        placement_.start();
    }

    // Caller holds turn_.
    void stop_workers() {
        if (!workers_) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& worker : *workers_) worker.join();
        workers_.reset();
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = false;
    }

    std::atomic<std::size_t> num_threads_;
    std::mutex turn_;   // one job at a time owns the workers
    std::mutex mutex_;  // guards the fields below
    std::condition_variable wake_;
    std::condition_variable done_;
    std::unique_ptr<std::vector<std::thread>> workers_;
    HelperPlacement placement_;  // guarded by turn_
    Job* job_ = nullptr;
    std::size_t helpers_wanted_ = 0;
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
};

#if defined(__unix__) || defined(__APPLE__)
void prepare_fork() { ThreadPool::instance().lock_for_fork(); }
void parent_after_fork() { ThreadPool::instance().unlock_after_fork(); }
void child_after_fork() { ThreadPool::instance().forget_workers_after_fork(); }

const bool fork_handlers_installed = [] {
    ThreadPool::instance();
    return pthread_atfork(prepare_fork, parent_after_fork, child_after_fork) == 0;
}();
#endif

}  // namespace

std::size_t available_cores() {
#if defined(__linux__)
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
        const int count = CPU_COUNT(&mask);
        if (count > 0) return static_cast<std::size_t>(count);
    }
#endif
    const unsigned hardware = std::thread::hardware_concurrency();
    return hardware == 0 ? 1 : hardware;
}

std::size_t get_num_threads() { return ThreadPool::instance().num_threads(); }

void set_num_threads(std::size_t n) { ThreadPool::instance().set_num_threads(n); }

void run_tasks(std::size_t num_tasks, const std::function<void(std::size_t)>& task,
               std::size_t max_threads) {
    ThreadPool::instance().run(num_tasks, task, max_threads);
}

}  // namespace fastembed
