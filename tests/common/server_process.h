// Test helper that runs a server binary (e.g. build/bin/flamingo-server) as a child process:
// fork/exec with the given arguments, its stdout and stderr captured through one pipe by a
// reader thread, waits for log substrings (the "listening on HOST:PORT" line gives the port,
// "ready" the end of start-up), sends signals, waits for the exit with a timeout and kills the
// process (SIGKILL) on destruction. Header-only, torch-free, no gRPC.
// Thread-safety: all methods may be called from any thread. The child gets
// PR_SET_PDEATHSIG(SIGKILL) so it dies with the test process; note that Linux sends it when the
// *thread* that forked exits, so construct ServerProcess on a thread that outlives it (the test's
// main thread).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flamingo::testing {

class ServerProcess {
 public:
  using Duration = std::chrono::milliseconds;

  // Starts `binary` with `args` (argv[1..]). Throws std::runtime_error when it cannot start.
  ServerProcess(const std::string& binary, const std::vector<std::string>& args) {
    std::vector<std::string> argv_strings;
    argv_strings.push_back(binary);
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    command_ = binary;
    for (const std::string& a : args) command_ += " " + a;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      close(fds[0]);
      close(fds[1]);
      throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid_ == 0) {
      // Child: only async-signal-safe calls from here on.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(argv[0], argv.data());
      static const char kMsg[] = "ServerProcess: execv failed\n";
      (void)!write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
      _exit(127);
    }
    close(fds[1]);
    read_fd_ = fds[0];
    reader_ = std::thread([this] { read_loop(); });
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  ~ServerProcess() {
    if (!reaped()) {
      kill(pid_, SIGKILL);
      wait_exit(Duration(10000));
    }
    if (reader_.joinable()) reader_.join();
    if (read_fd_ >= 0) close(read_fd_);
  }

  pid_t pid() const { return pid_; }
  const std::string& command() const { return command_; }

  // Everything the process wrote so far (stdout and stderr interleaved).
  std::string log() const {
    std::lock_guard lock(mu_);
    return log_;
  }
  size_t log_size() const {
    std::lock_guard lock(mu_);
    return log_.size();
  }

  // Waits until `needle` appears in the output at or after byte `from`; returns the offset of
  // the match, or nullopt on timeout or when the output ended (the process closed its pipe).
  std::optional<size_t> wait_for_log(const std::string& needle, Duration timeout,
                                     size_t from = 0) const {
    std::unique_lock lock(mu_);
    std::optional<size_t> found;
    cv_.wait_for(lock, timeout, [&] {
      const size_t at = log_.find(needle, std::min(from, log_.size()));
      if (at != std::string::npos) found = at;
      return found.has_value() || eof_;
    });
    if (!found) {
      const size_t at = log_.find(needle, std::min(from, log_.size()));
      if (at != std::string::npos) found = at;
    }
    return found;
  }

  // Waits for the first complete line containing `needle` (at or after `from`); returns it
  // without the newline.
  std::optional<std::string> wait_for_line(const std::string& needle, Duration timeout,
                                           size_t from = 0) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<size_t> at = wait_for_log(needle, timeout, from);
    if (!at) return std::nullopt;
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline,
                   [&] { return log_.find('\n', *at) != std::string::npos || eof_; });
    const size_t begin = log_.rfind('\n', *at);
    const size_t start = begin == std::string::npos ? 0 : begin + 1;
    const size_t end = log_.find('\n', *at);
    return log_.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }

  // Waits for "listening on HOST:PORT" and returns the port. Throws on timeout or early exit.
  int wait_listening(Duration timeout = Duration(30000)) {
    const std::string key = "listening on ";
    std::optional<std::string> line = wait_for_line(key, timeout);
    if (!line) throw std::runtime_error("no '" + key + "' line from " + describe());
    const std::string rest = line->substr(line->find(key) + key.size());
    const size_t space = rest.find(' ');
    const std::string address = rest.substr(0, space);
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) throw std::runtime_error("bad listening line: " + *line);
    port_ = std::stoi(address.substr(colon + 1));
    host_ = address.substr(0, colon);
    return port_;
  }

  // wait_listening, then waits for the "ready" line. Throws on timeout or early exit.
  void wait_ready(Duration timeout = Duration(60000)) {
    const auto start = std::chrono::steady_clock::now();
    if (port_ == 0) wait_listening(timeout);
    const auto left =
        timeout - std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - start);
    if (!wait_for_log(" ready", std::max(left, Duration(1)))) {
      throw std::runtime_error("no 'ready' line from " + describe());
    }
  }

  int port() const { return port_; }
  // "HOST:PORT" from the listening line (valid after wait_listening).
  std::string address() const { return host_ + ":" + std::to_string(port_); }

  bool send_signal(int sig) const { return !reaped() && kill(pid_, sig) == 0; }

  // Waits for the process to end. Returns its exit code, 128 + the signal number when a signal
  // killed it, or nullopt on timeout.
  std::optional<int> wait_exit(Duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      {
        std::lock_guard lock(wait_mu_);
        if (exit_code_) return exit_code_;
        int status = 0;
        const pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
          exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
          return exit_code_;
        }
        if (r < 0 && errno != EINTR) return std::nullopt;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(Duration(5));
    }
  }

  bool reaped() const {
    std::lock_guard lock(wait_mu_);
    return exit_code_.has_value();
  }

  // The command and the last `max_bytes` of the output, for failure messages.
  std::string describe(size_t max_bytes = 4000) const {
    const std::string out = log();
    const std::string tail =
        out.size() > max_bytes ? "..." + out.substr(out.size() - max_bytes) : out;
    return "`" + command_ + "`; output:\n" + tail;
  }

 private:
  void read_loop() {
    char buf[4096];
    while (true) {
      const ssize_t n = read(read_fd_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard lock(mu_);
      if (n <= 0) {
        eof_ = true;
        cv_.notify_all();
        return;
      }
      log_.append(buf, static_cast<size_t>(n));
      cv_.notify_all();
    }
  }

  std::string command_;
  pid_t pid_ = -1;
  int read_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string log_;
  bool eof_ = false;
  mutable std::mutex wait_mu_;
  std::optional<int> exit_code_;
  std::string host_;
  int port_ = 0;
};

}  // namespace flamingo::testing
