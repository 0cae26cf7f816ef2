// outcome.h: run.dir/outcome.json, how a run ended (finished, preempted by a stop signal, or
// failed with its exit code and the rank that failed first), and the log line that says so.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <spdlog/logger.h>

#include "launcher/run_lock.h"
#include "parallel/session/world.h"
#include "runtime/error.h"

namespace nupipe::launcher {

// What outcome.json holds (docs/sre-runbook.md#the-runs-outcome).
struct Outcome {
  std::string status;      // "finished", "preempted" or "failed"
  int exit_code = 0;
  int64_t step = 0;        // steps done (the training state's step)
  int64_t steps = 0;       // train.steps
  std::string checkpoint;  // the newest committed checkpoint ("" none)
  int64_t checkpoint_step = -1;
  int failed_rank = -1;    // the rank that failed first (-1: none, or not known)
  int reported_by = 0;     // the rank that wrote the record
  std::string signal;      // preempted: the stop signal
  std::string reason, hint;
};

// Records the outcome of one `nupipe train`. Inert until hold() gives it run.dir's lock (a run
// refused before that, by its config, its data or another live run, writes nothing); from then
// on every exit path writes run.dir/outcome.json atomically (a temporary file renamed over it)
// while the lock is still held, then logs it as the run's last line. Thread-safe: the
// watchdog's thread reports a peer failure through it.
class OutcomeRecorder {
 public:
  OutcomeRecorder(const parallel::World& world, int64_t steps, std::string checkpoint_dir);
  ~OutcomeRecorder();

  void hold(std::unique_ptr<RunLock> lock);
  void step_done(int64_t step);

  // Rank 0: training ended, at train.steps or, `stopped`, on a stop signal (launcher/signals.h).
  void finished(bool stopped, spdlog::logger& log);
  // An error leaving train(), caught on this rank (`internal` for a non-nupipe exception).
  // Rank 0 records errors every rank agreed on; a peer failure (5) or an internal error (1) is
  // recorded by the rank that caught it.
  void failed(ExitCode code, const std::string& message, const std::string& hint,
              spdlog::logger& log);
  // The watchdog's report, just before the process ends with exit code 5.
  void peer_failure(const std::string& report, spdlog::logger& log);

  std::string path() const;  // run.dir/outcome.json ("" before hold)

 private:
  void write(Outcome o, spdlog::logger& log);  // with mu_ held
  const parallel::World& world_;
  const int64_t steps_;
  const std::string checkpoint_dir_;
  std::mutex mu_;  // the watchdog's thread waits on it 1 s at most (peer_failure)
  std::unique_ptr<RunLock> lock_;
  int64_t step_ = 0;
  bool written_ = false;
  double started_unix_ = 0.0;
};

// Runs `body`; an exception leaving it is recorded as the run's failure, then rethrown.
template <class Body>
auto recording_failures(OutcomeRecorder& outcome, spdlog::logger& log, Body&& body) {
  try {
    return body();
  } catch (const Error& e) {
    outcome.failed(e.code(), e.what(), e.hint(), log);
    throw;
  } catch (const std::exception& e) {
    outcome.failed(ExitCode::internal, std::string("internal error: ") + e.what(),
                   "this is a bug in nupipe; please report it with the command line and config",
                   log);
    throw;
  }
}

// The rank a failure message names as the one that failed: "rank N failed ..." (the consensus
// verdict) or "not answering: rank N" (the watchdog's); -1 when it names none.
int failed_rank_in(const std::string& message);

}  // namespace nupipe::launcher
