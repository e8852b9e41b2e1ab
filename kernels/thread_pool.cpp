#include "kernels/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <string>

namespace flamingo::kernels {
namespace {

thread_local bool in_task = false;

// futex wait / wake on the generation word (libstdc++ 12's std::atomic::wait missed wake-ups
// here: a worker slept through the destructor's notify_all).
void futex_wait(std::atomic<uint32_t>& word, uint32_t seen) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr,
          0);
}
void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

// How long an idle worker spins before it sleeps (FLAMINGO_POOL_SPIN_US, default 200 us):
// long enough to bridge the gap between two products of a forward pass, short enough that a
// worker does not hold its core while the server waits for requests.
std::chrono::microseconds spin_time() {
  static const auto t = [] {
    const char* env = std::getenv("FLAMINGO_POOL_SPIN_US");
    return std::chrono::microseconds(env != nullptr ? std::atol(env) : 200);
  }();
  return t;
}

int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::mutex pool_mu;
std::unique_ptr<ThreadPool> pool;
int pool_threads = 0;

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  futex_wake_all(generation_);
  for (auto& t : workers_) t.join();
}

void ThreadPool::drain_tasks() {
  const bool was_in_task = in_task;
  in_task = true;
  for (;;) {
    const int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= job_tasks_) break;
    try {
      (*job_)(t);
    } catch (...) {
      std::lock_guard lock(error_mu_);
      if (!error_) error_ = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
  in_task = was_in_task;
}

void ThreadPool::worker_loop(int) {
  // The generation the constructor left, not the current one: a worker that starts late (after
  // jobs, or after the destructor's bump) must still see the change and check stop_.
  uint32_t seen = 0;
  for (;;) {
    // Spin for a while, then sleep until the generation changes.
    const auto until = std::chrono::steady_clock::now() + spin_time();
    uint32_t now = generation_.load(std::memory_order_acquire);
    for (int i = 0; now == seen; ++i) {
      _mm_pause();
      if ((i & 255) == 255 && std::chrono::steady_clock::now() > until) {
        sleeping_.fetch_add(1);         // seq_cst: run() bumps the generation, then reads this
        futex_wait(generation_, seen);  // returns at once if it moved on
        sleeping_.fetch_sub(1);
      }
      now = generation_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stop_.load()) return;
    busy_workers_.fetch_add(1, std::memory_order_acq_rel);
    // pending_ is stored (release) after job_, job_tasks_ and next_task_: seeing it > 0
    // means seeing them; run() waits for busy_workers_ == 0 before it rewrites them.
    if (pending_.load(std::memory_order_acquire) > 0) drain_tasks();
    busy_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  std::unique_lock lock(run_mu_, std::try_to_lock);
  if (workers_.empty() || tasks == 1 || in_task || !lock.owns_lock()) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  // Wait until no worker is still inside the previous job (it may be about to read job_).
  while (busy_workers_.load(std::memory_order_acquire) != 0) _mm_pause();
  job_ = &fn;
  job_tasks_ = tasks;
  error_ = nullptr;
  next_task_.store(0, std::memory_order_relaxed);
  pending_.store(tasks, std::memory_order_release);  // publishes job_, job_tasks_, next_task_
  generation_.fetch_add(1);
  if (sleeping_.load() > 0) futex_wake_all(generation_);  // a futex call only for sleepers
  drain_tasks();
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
  // Workers that woke late find next_task_ past the end and leave at once.
  if (error_) std::rethrow_exception(error_);
}

ThreadPool& kernel_pool() {
  std::lock_guard lock(pool_mu);
  if (!pool) {
    if (pool_threads <= 0) pool_threads = default_threads();
    pool = std::make_unique<ThreadPool>(pool_threads);
  }
  return *pool;
}

void set_kernel_threads(int threads) {
  std::lock_guard lock(pool_mu);
  const int n = threads > 0 ? threads : default_threads();
  if (pool && pool->threads() == n) return;
  pool.reset();
  pool_threads = n;
}

int kernel_threads() {
  std::lock_guard lock(pool_mu);
  return pool ? pool->threads() : (pool_threads > 0 ? pool_threads : default_threads());
}

}  // namespace flamingo::kernels
