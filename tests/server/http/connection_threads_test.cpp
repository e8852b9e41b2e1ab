// Tests of server/http/connection_threads.h: a thread per job up to the limit (so blocked
// connections do not hold up others), FIFO waiting beyond it, idle threads ending, shutdown
// running what is queued.
#include "server/http/connection_threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

namespace flamingo {
namespace {

using namespace std::chrono_literals;

TEST(ConnectionThreads, BlockedJobsDoNotHoldUpOthers) {
  ConnectionThreads pool(200);
  std::latch release(1);
  std::atomic<int> started{0};
  for (int i = 0; i < 100; ++i) {
    pool.enqueue([&] {
      ++started;
      release.wait();
    });
  }
  // A job enqueued after 100 blocked ones still runs at once.
  std::latch ran(1);
  pool.enqueue([&] { ran.count_down(); });
  ran.wait();
  release.count_down();
  pool.shutdown();
  EXPECT_EQ(started.load(), 100);
  EXPECT_GE(pool.peak_threads(), 101u);
  EXPECT_EQ(pool.threads(), 0u);
}

TEST(ConnectionThreads, BeyondTheLimitJobsWaitInOrder) {
  ConnectionThreads pool(2);
  std::mutex mu;
  std::vector<int> order;
  for (int i = 0; i < 20; ++i) {
    pool.enqueue([&, i] {
      {
        std::lock_guard lock(mu);
        order.push_back(i);
      }
      std::this_thread::sleep_for(1ms);
    });
  }
  pool.shutdown();  // runs everything queued
  ASSERT_EQ(order.size(), 20u);
  EXPECT_LE(pool.peak_threads(), 2u);
  // Jobs start in the order queued, give or take the other thread's job: the order in which
  // they start (recorded first thing, not after the sleep, where a thread descheduled on a
  // loaded machine let the other finish two jobs; seen once under ctest -j2).
  for (size_t k = 0; k + 2 < order.size(); ++k) EXPECT_LT(order[k], order[k + 2] + 2);
}

TEST(ConnectionThreads, IdleThreadsEnd) {
  ConnectionThreads pool(8, 50ms);
  std::latch done(4);
  for (int i = 0; i < 4; ++i) pool.enqueue([&] { done.count_down(); });
  done.wait();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (pool.threads() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(pool.threads(), 0u);
  // And new work starts new threads.
  std::latch again(1);
  pool.enqueue([&] { again.count_down(); });
  again.wait();
}

}  // namespace
}  // namespace flamingo
