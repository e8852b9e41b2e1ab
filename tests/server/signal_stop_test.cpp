// Unit tests of SignalStop (server/signal_stop.h, issue 15): a signal handled on any thread,
// whatever the waiting thread's mask, wakes wait(); cancel() ends a blocked wait(); one instance
// at a time; the previous dispositions (SIG_IGN included) are replaced and then restored.
#include "server/signal_stop.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <latch>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace flamingo {
namespace {

using std::chrono::milliseconds;

// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts from now on) for
// its lifetime, as a program that once relied on sigwait() would.
class BlockStopSignals {
 public:
  BlockStopSignals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, &saved_);
  }
  ~BlockStopSignals() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

 private:
  sigset_t saved_;
};

void unblock_all_signals() {
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

// A thread with an empty signal mask that idles until destroyed, as a library's worker thread:
// while every other thread blocks SIGINT/SIGTERM, a process-directed one can only go here.
class StrayThread {
 public:
  StrayThread() {
    std::latch started(1);
    thread_ = std::thread([this, &started] {
      unblock_all_signals();
      started.count_down();
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return done_; });  // a handler may run here (futex wait resumes)
    });
    started.wait();
  }
  ~StrayThread() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// wait() on a thread of its own; cancel()ed on destruction so that a failing test cannot hang.
class BackgroundWait {
 public:
  explicit BackgroundWait(SignalStop& stop)
      : stop_(stop), result_(std::async(std::launch::async, [&stop] { return stop.wait(); })) {}
  ~BackgroundWait() { stop_.cancel(); }  // then ~future joins the thread
  BackgroundWait(const BackgroundWait&) = delete;
  BackgroundWait& operator=(const BackgroundWait&) = delete;

  // What wait() returned, or nullopt when it has not returned within `timeout`.
  std::optional<int> result(milliseconds timeout) {
    if (result_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return result_.get();
  }

 private:
  SignalStop& stop_;
  std::future<int> result_;
};

TEST(SignalStopTest, SignalRaisedOnAThreadWithAnEmptyMaskIsReturned) {
  for (const int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    SignalStop stop;
    BlockStopSignals blocked;     // neither this thread nor the waiter can run the handler
    BackgroundWait waiter(stop);  // its thread blocks the signals too
    ASSERT_EQ(waiter.result(milliseconds(50)), std::nullopt) << "wait() returned without a signal";
    std::thread([sig] {
      unblock_all_signals();
      raise(sig);  // thread-directed: the handler runs on this thread
    }).join();
    EXPECT_EQ(waiter.result(milliseconds(5000)), std::optional<int>(sig));
  }
}

TEST(SignalStopTest, ProcessDirectedSignalTakenByAStrayThreadIsReturned) {
  SignalStop stop;
  BlockStopSignals blocked;
  StrayThread stray;  // the only thread that does not block SIGTERM
  BackgroundWait waiter(stop);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_EQ(waiter.result(milliseconds(5000)), std::optional<int>(SIGTERM))
      << "the stray thread's handler did not wake wait()";
}

TEST(SignalStopTest, SignalsAreReturnedInOrderOneWaitEach) {
  SignalStop stop;
  BlockStopSignals blocked;
  for (const int sig : {SIGINT, SIGTERM}) {
    std::thread([sig] {
      unblock_all_signals();
      raise(sig);
    }).join();
  }
  EXPECT_EQ(stop.wait(), SIGINT);
  EXPECT_EQ(stop.wait(), SIGTERM);
  stop.cancel();
  EXPECT_EQ(stop.wait(), SignalStop::kCancelled);
}

TEST(SignalStopTest, CancelEndsABlockedWaitAndEveryLaterOne) {
  SignalStop stop;
  {
    BackgroundWait waiter(stop);
    ASSERT_EQ(waiter.result(milliseconds(50)), std::nullopt);
    stop.cancel();
    EXPECT_EQ(waiter.result(milliseconds(5000)), std::optional<int>(SignalStop::kCancelled));
  }
  EXPECT_EQ(stop.wait(), SignalStop::kCancelled);
  stop.cancel();  // again: harmless
  EXPECT_EQ(stop.wait(), SignalStop::kCancelled);
}

TEST(SignalStopTest, OneInstanceAtATime) {
  {
    SignalStop first;
    EXPECT_THROW(SignalStop(), std::logic_error);
  }
  SignalStop again;  // the first one is gone
  again.cancel();
  EXPECT_EQ(again.wait(), SignalStop::kCancelled);
}

sighandler_t current_handler(int sig) {
  struct sigaction action {};
  sigaction(sig, nullptr, &action);
  return action.sa_handler;
}

TEST(SignalStopTest, InstallsOverAnIgnoredSignalAndRestoresItAfterwards) {
  // A shell starts background jobs with SIGINT ignored; the server must still see Ctrl-C/kill.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction saved {};
  ASSERT_EQ(sigaction(SIGINT, &ignore, &saved), 0);
  {
    SignalStop stop;
    EXPECT_NE(current_handler(SIGINT), SIG_IGN);
    EXPECT_NE(current_handler(SIGINT), SIG_DFL);
    struct sigaction installed {};
    sigaction(SIGTERM, nullptr, &installed);
    EXPECT_NE(installed.sa_handler, SIG_DFL);
    EXPECT_TRUE(installed.sa_flags & SA_RESTART);
    BlockStopSignals blocked;
    std::thread([] {
      unblock_all_signals();
      raise(SIGINT);
    }).join();
    EXPECT_EQ(stop.wait(), SIGINT);
  }
  EXPECT_EQ(current_handler(SIGINT), SIG_IGN);
  sigaction(SIGINT, &saved, nullptr);
}

}  // namespace
}  // namespace flamingo
