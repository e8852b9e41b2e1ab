// One persistent pool of worker threads for the CPU kernels (no thread team per product).
// run(tasks, fn) hands out task indices 0..tasks-1 through an atomic counter to the workers and
// the calling thread, and returns when all are done: whoever is free takes the next task, so a
// core held by another thread (gRPC, a client) slows a product by its share of the tasks, not by
// a whole static slice. Workers spin briefly after a job (products come back to back in a
// forward pass), then sleep on a futex until the next one.
//
// Thread-safe: run() may be called from any thread; while one caller's job runs, another
// caller (or a task calling run() again) runs its job inline on its own thread. Kernels must
// give the same bits whichever thread runs which task.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace flamingo::kernels {

class ThreadPool {
 public:
  // `threads` counts the caller: threads - 1 workers are started (threads < 1 means 1).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(0) .. fn(tasks - 1), each once, and returns when every one has returned. An
  // exception thrown by a task is rethrown here (the first one; other tasks still run).
  void run(int64_t tasks, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop(int index);
  void drain_tasks();

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one job at a time; other callers run inline
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  std::atomic<int64_t> pending_{0};      // tasks not yet finished
  std::atomic<uint32_t> generation_{0};  // bumped per job; workers wait on it
  std::atomic<int> busy_workers_{0};     // workers inside the current job
  std::atomic<int> sleeping_{0};         // workers blocked in generation_.wait
  std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;
};

// The pool the kernels use, created on first use with kernel_threads() threads.
ThreadPool& kernel_pool();
// Sets the kernel pool's size (the CLI's / server's / bench's --threads); default: the number
// of cores this process may run on. Replaces the pool; call it before kernels run.
void set_kernel_threads(int threads);
int kernel_threads();

}  // namespace flamingo::kernels
