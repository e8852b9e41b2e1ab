#include "server/signal_stop.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace flamingo {
namespace {

// The handler's view of the live SignalStop: its pipe's write end (-1: none), and how many
// handler invocations are between reading it and finishing their write(), so that the
// destructor never closes a descriptor that a handler is about to write to (or that a later
// open() reuses). Both seq_cst: the destructor stores -1 then reads the count, a handler bumps
// the count then reads the descriptor, so one of them sees the other.
std::atomic<int> g_write_fd{-1};
std::atomic<int> g_handlers_running{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");

constexpr unsigned char kCancelByte = SignalStop::kCancelled;

void on_signal(int sig) {
  const int saved_errno = errno;
  g_handlers_running.fetch_add(1);
  const int fd = g_write_fd.load();
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(sig);
    // EAGAIN (a full pipe) loses nothing: the reader has bytes to wake up for.
    (void)!write(fd, &byte, 1);
  }
  g_handlers_running.fetch_sub(1);
  errno = saved_errno;
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), std::string("SignalStop: ") + what);
}

}  // namespace

SignalStop::SignalStop() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2");
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  int none = -1;
  if (!g_write_fd.compare_exchange_strong(none, write_fd_)) {
    close(read_fd_);
    close(write_fd_);
    throw std::logic_error("SignalStop: another instance is active");
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (size_t i = 0; i < kSignals.size(); ++i) {
    if (sigaction(kSignals[i], &action, &previous_[i]) != 0) {
      const int error = errno;
      release(i);
      errno = error;
      throw_errno("sigaction");
    }
  }
}

SignalStop::~SignalStop() { release(kSignals.size()); }

void SignalStop::release(size_t installed) {
  for (size_t i = 0; i < installed; ++i) sigaction(kSignals[i], &previous_[i], nullptr);
  g_write_fd.store(-1);
  while (g_handlers_running.load() != 0) std::this_thread::yield();
  close(read_fd_);
  close(write_fd_);
}

int SignalStop::wait() {
  while (true) {
    if (cancelled_) return kCancelled;
    unsigned char byte = 0;
    const ssize_t n = read(read_fd_, &byte, 1);
    if (n == 1 && byte != kCancelByte) return byte;
    if (n == 1) continue;           // cancel()'s wake-up: cancelled_ is set
    if (n == 0) return kCancelled;  // cannot happen while the write end is open
    if (errno != EAGAIN && errno != EINTR) throw_errno("read");
    pollfd readable{read_fd_, POLLIN, 0};
    if (poll(&readable, 1, -1) < 0 && errno != EINTR) throw_errno("poll");
  }
}

void SignalStop::cancel() {
  cancelled_ = true;
  // Wakes a wait() blocked in poll(); EAGAIN (a full pipe) wakes it as well.
  const unsigned char byte = kCancelByte;
  (void)!write(write_fd_, &byte, 1);
}

}  // namespace flamingo
