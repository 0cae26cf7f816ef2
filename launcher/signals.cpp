// signals.cpp: async-signal-safe handlers that only record the signal.
#include "launcher/signals.h"

#include <csignal>
#include <initializer_list>

namespace nupipe::launcher {

namespace {
volatile std::sig_atomic_t g_signal = 0;  // the one process-wide flag a signal handler needs

extern "C" void on_stop_signal(int sig) {
  if (g_signal == sig) {  // the second time: the default action (terminate)
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal = sig;
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

int stop_signal() { return g_signal; }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace nupipe::launcher
