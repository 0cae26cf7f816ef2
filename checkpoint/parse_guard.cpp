// parse_guard.cpp: the fault handler behind ParseGuard (checkpoint/parse_guard.h).
#include "checkpoint/parse_guard.h"

#include <signal.h>
#include <unistd.h>

#include <mutex>

#include "runtime/error.h"
#include "runtime/printable.h"

namespace nupipe::checkpoint {
namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE};
constexpr int kCount = sizeof(kSignals) / sizeof(kSignals[0]);

// The innermost guard of this thread (the executable's own TLS: safe to read in a handler).
thread_local const ParseGuard* t_innermost = nullptr;
thread_local const char* t_message = nullptr;
thread_local size_t t_length = 0;

std::mutex g_mutex;  // guards g_guards and g_previous (not touched by the handler but to restore)
int g_guards = 0;
struct sigaction g_previous[kCount];

void on_fault(int sig, siginfo_t*, void*) {
  if (t_message != nullptr) {
    ssize_t ignored = write(STDERR_FILENO, t_message, t_length);
    (void)ignored;
    _exit(static_cast<int>(ExitCode::checkpoint));
  }
  // Not this thread's parse: put the previous handler back; returning re-runs the faulting
  // instruction, which faults again into it.
  for (int i = 0; i < kCount; ++i) {
    if (kSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  }
}

}  // namespace

ParseGuard::ParseGuard(const std::string& path)
    : message_("error: the HDF5 library crashed reading " + printable(path) +
               ": the file's HDF5 structures are malformed (its bytes were changed after they "
               "were checksummed, or its manifest was rewritten to match)\n"
               "HINT: this file cannot be read: resume from another checkpoint "
               "(checkpoint.resume = PATH) or restore it from a copy; nothing was changed\n"),
      outer_(t_innermost) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_guards++ == 0) {
      struct sigaction sa {};
      sa.sa_sigaction = on_fault;
      sa.sa_flags = SA_SIGINFO | SA_NODEFER;
      sigemptyset(&sa.sa_mask);
      for (int i = 0; i < kCount; ++i) sigaction(kSignals[i], &sa, &g_previous[i]);
    }
  }
  t_innermost = this;
  t_length = message_.size();
  t_message = message_.c_str();
}

ParseGuard::~ParseGuard() {
  t_innermost = outer_;
  t_message = outer_ ? outer_->message_.c_str() : nullptr;
  t_length = outer_ ? outer_->message_.size() : 0;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (--g_guards == 0) {
    for (int i = 0; i < kCount; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
  }
}

}  // namespace nupipe::checkpoint
