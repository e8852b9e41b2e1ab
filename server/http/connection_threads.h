// The HTTP server's connection threads: cpp-httplib 0.11 serves each connection on one thread
// from start to close (keep-alive waits included), so a fixed pool lets a crowd of idle
// connections starve everyone else. ConnectionThreads starts a thread per connection while
// fewer than `max_threads` exist and reuses idle ones; a thread idle for `idle_exit` ends.
// Beyond max_threads, connections wait in FIFO order. Include only where httplib.h is (this
// header includes it with the macros Debian's library was built with).
// Thread-safety: enqueue and shutdown may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "server/http/httplib_config.h"

namespace flamingo {

class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(size_t max_threads,
                             std::chrono::milliseconds idle_exit = std::chrono::seconds(30));
  ~ConnectionThreads() override;  // shutdown()

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then waits until every thread has ended.
  void shutdown() override;

  size_t threads() const;  // alive now
  size_t peak_threads() const;

 private:
  struct State {
    std::mutex mu;
    std::condition_variable work, ended;
    std::deque<std::function<void()>> jobs;
    size_t alive = 0, idle = 0, peak = 0;
    bool stopping = false;
  };
  static void worker(std::shared_ptr<State> s, std::chrono::milliseconds idle_exit);

  std::shared_ptr<State> state_;
  size_t max_threads_;
  std::chrono::milliseconds idle_exit_;
};

}  // namespace flamingo
