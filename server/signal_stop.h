// SignalStop: turns SIGINT/SIGTERM into an event that a stop thread waits for, whichever thread
// the kernel hands the signal to. It owns the SIGINT/SIGTERM handlers (installed with
// sigaction + SA_RESTART, also when the signal was ignored at start, as a shell does for
// background jobs; the previous dispositions come back on destruction) and a self-pipe
// (O_CLOEXEC | O_NONBLOCK): the handler only write()s the signal number to it, errno saved and
// restored, and wait() reads it back. Unlike sigwait() on blocked signals this does not depend
// on every thread's signal mask: a thread that a library started before main() with the
// signals unblocked (OpenBLAS's pthread variant) may run the handler, and wait() still returns.
// Torch-free, gRPC-free; one instance per process at a time.
//
// Thread-safety: construct and destroy on one thread, after every wait() has returned; wait()
// on one thread at a time; cancel() from any thread, any number of times; the handler is
// async-signal-safe and may run on any thread, also while the destructor runs.
#pragma once

#include <signal.h>

#include <array>
#include <atomic>

namespace flamingo {

class SignalStop {
 public:
  // What wait() returns after cancel() (no signal has the number 0).
  static constexpr int kCancelled = 0;

  // Creates the pipe and installs the handlers. Throws std::system_error when a system call
  // fails, std::logic_error when another SignalStop exists.
  SignalStop();
  ~SignalStop();  // restores the previous dispositions, then closes the pipe
  SignalStop(const SignalStop&) = delete;
  SignalStop& operator=(const SignalStop&) = delete;

  // Blocks until SIGINT or SIGTERM was delivered (returns its number; one wait() per delivery,
  // in order) or cancel() was called (returns kCancelled, then on every later call too).
  // Throws std::system_error when polling or reading the pipe fails.
  int wait();

  // Makes the pending or next wait() return kCancelled (e.g. so the stop thread can be joined
  // when the program ends without a signal).
  void cancel();

 private:
  static constexpr std::array<int, 2> kSignals = {SIGINT, SIGTERM};

  // Restores the first `installed` dispositions, waits out running handlers, closes the pipe.
  void release(size_t installed);

  int read_fd_ = -1;
  int write_fd_ = -1;
  std::atomic<bool> cancelled_{false};
  std::array<struct sigaction, kSignals.size()> previous_{};
};

}  // namespace flamingo
