// ThreadPool: every task runs exactly once, on several threads; nested and concurrent callers
// run inline instead of deadlocking; an exception in a task reaches the caller and the pool
// keeps working; resizing the kernel pool.
#include "kernels/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace flamingo::kernels {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.threads(), 3);
  for (int64_t tasks : {0, 1, 2, 7, 100, 1000}) {
    std::vector<std::atomic<int>> count(tasks);
    pool.run(tasks, [&](int64_t t) { count[t].fetch_add(1); });
    for (int64_t t = 0; t < tasks; ++t) ASSERT_EQ(count[t].load(), 1) << tasks << " " << t;
  }
}

TEST(ThreadPool, WorkersTakePart) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  for (int rep = 0; rep < 200 && ids.size() < 2; ++rep) {
    pool.run(64, [&](int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      std::lock_guard lock(mu);
      ids.insert(std::this_thread::get_id());
    });
  }
  EXPECT_EQ(ids.size(), 2u);
}

TEST(ThreadPool, NestedRunExecutesInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run(4, [&](int64_t) { pool.run(3, [&](int64_t) { inner.fetch_add(1); }); });
  EXPECT_EQ(inner.load(), 12);
}

TEST(ThreadPool, ConcurrentCallersAllComplete) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) pool.run(16, [&](int64_t t) { sum.fetch_add(t); });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4 * 200 * (15 * 16 / 2));
}

TEST(ThreadPool, ExceptionReachesTheCallerAndThePoolGoesOn) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.run(10,
                        [&](int64_t t) {
                          ran.fetch_add(1);
                          if (t == 3) throw std::runtime_error("task 3");
                        }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 10);
  std::atomic<int> again{0};
  pool.run(10, [&](int64_t) { again.fetch_add(1); });
  EXPECT_EQ(again.load(), 10);
}

TEST(ThreadPool, SleepingWorkersWakeForTheNextJob) {
  ThreadPool pool(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin time: asleep
  std::atomic<int> n{0};
  pool.run(50, [&](int64_t) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 50);
}

TEST(ThreadPool, KernelPoolFollowsSetKernelThreads) {
  const int saved = kernel_threads();
  set_kernel_threads(3);
  EXPECT_EQ(kernel_pool().threads(), 3);
  set_kernel_threads(1);
  EXPECT_EQ(kernel_pool().threads(), 1);
  set_kernel_threads(saved);
}

}  // namespace
}  // namespace flamingo::kernels
