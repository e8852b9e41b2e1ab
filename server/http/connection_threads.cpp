// Connection threads that grow on demand. See connection_threads.h.
#include "server/http/connection_threads.h"

#include <thread>

namespace flamingo {

ConnectionThreads::ConnectionThreads(size_t max_threads, std::chrono::milliseconds idle_exit)
    : state_(std::make_shared<State>()),
      max_threads_(max_threads < 1 ? 1 : max_threads),
      idle_exit_(idle_exit) {}

ConnectionThreads::~ConnectionThreads() { shutdown(); }

void ConnectionThreads::enqueue(std::function<void()> fn) {
  std::unique_lock lock(state_->mu);
  state_->jobs.push_back(std::move(fn));
  if (state_->idle >= state_->jobs.size() || state_->alive >= max_threads_) {
    state_->work.notify_one();
    return;
  }
  ++state_->alive;
  state_->peak = std::max(state_->peak, state_->alive);
  lock.unlock();
  // Detached: it holds the state, and shutdown() waits for it to say it ended.
  std::thread(worker, state_, idle_exit_).detach();
}

void ConnectionThreads::worker(std::shared_ptr<State> s, std::chrono::milliseconds idle_exit) {
  std::unique_lock lock(s->mu);
  while (true) {
    if (s->jobs.empty()) {
      if (s->stopping) break;
      ++s->idle;
      const bool woke =
          s->work.wait_for(lock, idle_exit, [&] { return !s->jobs.empty() || s->stopping; });
      --s->idle;
      if (!woke) break;  // idle too long
      continue;
    }
    std::function<void()> job = std::move(s->jobs.front());
    s->jobs.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
  --s->alive;
  s->ended.notify_all();
}

void ConnectionThreads::shutdown() {
  std::unique_lock lock(state_->mu);
  state_->stopping = true;
  state_->work.notify_all();
  state_->ended.wait(lock, [&] { return state_->alive == 0; });
}

size_t ConnectionThreads::threads() const {
  std::lock_guard lock(state_->mu);
  return state_->alive;
}

size_t ConnectionThreads::peak_threads() const {
  std::lock_guard lock(state_->mu);
  return state_->peak;
}

}  // namespace flamingo
