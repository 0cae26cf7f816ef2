// signals.cpp: async-signal-safe handlers that only record the signal.
#include "launcher/signals.h"

#include <atomic>
#include <csignal>
#include <initializer_list>

namespace nupipe::launcher {

namespace {
// The one process-wide flag a signal handler needs. Atomic, not volatile sig_atomic_t: the
// handler runs on whichever thread the kernel picks (Open MPI's progress thread, the watchdog),
// and only an atomic orders its write with the training thread's read. Lock-free, so safe in a
// handler.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  if (g_signal.load() == sig) {  // the second time: the default action (terminate)
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal.store(sig);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

int stop_signal() { return g_signal.load(); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace nupipe::launcher
