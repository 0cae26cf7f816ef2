// signals.h: preemption. SIGTERM, SIGINT and SIGUSR1 (which mpirun forwards to its ranks)
// ask the run to stop after the current step; the trainer then agrees on it with every rank,
// saves a checkpoint (checkpoint.on_signal = "save") and exits 0.
#pragma once

namespace nupipe::launcher {

// Installs the handlers (idempotent); a second signal of the same kind ends the process at
// once with the default action, for a user who really means it.
void install_stop_handlers();
// The signal received since install_stop_handlers(), or 0.
int stop_signal();
const char* signal_name(int sig);

}  // namespace nupipe::launcher
