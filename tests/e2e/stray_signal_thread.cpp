// A test library for LD_PRELOAD (issue 15): its constructor, which runs before main(), starts a
// detached thread with an empty signal mask that sleeps forever, as OpenBLAS's pthread variant
// does with its worker threads. A program that blocks SIGINT/SIGTERM in main() and sigwait()s
// for them loses a process-directed signal to this thread. The library announces itself on
// stderr ("stray_signal_thread: started ...", so a test can check that it was loaded) and says
// when a signal handler ran on its thread. Plain libc and pthreads only.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace {

void say(const char* message, size_t size) { (void)!write(STDERR_FILENO, message, size); }

void* sleep_forever(void*) {
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);  // already so from birth; just to be explicit
  while (true) {
    pause();  // returns only after a signal handler ran on this thread
    static const char kMsg[] = "stray_signal_thread: a signal handler ran on the stray thread\n";
    say(kMsg, sizeof(kMsg) - 1);
  }
  return nullptr;
}

__attribute__((constructor)) void start_stray_thread() {
  // Born with an empty mask whatever the caller's mask: no window where the thread blocks.
  sigset_t none;
  sigset_t saved;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, &saved);
  pthread_t thread;
  const bool started = pthread_create(&thread, nullptr, sleep_forever, nullptr) == 0;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (!started) {
    static const char kMsg[] = "stray_signal_thread: pthread_create failed\n";
    say(kMsg, sizeof(kMsg) - 1);
    return;
  }
  pthread_detach(thread);
  static const char kMsg[] = "stray_signal_thread: started a thread with no signal blocked\n";
  say(kMsg, sizeof(kMsg) - 1);
}

}  // namespace
