// checkpointing.h: the trainer's side of checkpoints: where a run starts (checkpoint.resume,
// verification, fallback, the model check), what changed since the checkpoint, and saving on
// the configured interval with retention and the write-error policy.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "checkpoint/checkpoint_info.h"
#include "checkpoint/snapshot.h"
#include "launcher/config.h"
#include "launcher/stage.h"
#include "parallel/comm/topology.h"
#include "parallel/session/watchdog.h"
#include "runtime/allocator.h"
#include "runtime/error.h"

namespace nupipe::launcher {

struct ResumePoint {
  std::string dir;                  // the checkpoint to load; empty: start from step 0
  checkpoint::CheckpointInfo info;  // its attributes (when dir is set)
  bool checkpoints_exist = false;   // checkpoint.dir holds committed checkpoints
  std::vector<std::string> notes;   // what was decided and why, for the run's log
  std::vector<std::string> warnings;
};

// Collective over the world. checkpoint.resume:
//   "auto":  the newest committed checkpoint of checkpoint.dir that verifies; a damaged one
//            is reported (file and dataset) and the previous one used, or, with
//            checkpoint.strict, the run stops with exit code 4. None: step 0.
//   "never": step 0; a checkpoint.dir that holds checkpoints is refused (exit 2).
//   a path:  that checkpoint, which must verify (exit 4).
// A checkpoint of another model (runtime::model_keys(): family, n_layer, d_model, n_head,
// n_kv_head, ffn_hidden, vocab_size, seq_len, tie_embeddings) stops the run with exit code 4 naming every differing key with both values.
// Uncommitted leftovers (step_N.tmp) are never loaded; rank 0 removes them.
ResumePoint find_resume_point(const Config& config, parallel::MpiCommunicator& world);

// checkpoint.dir takes a save: created when missing, and a probe file written and removed in
// it, when checkpoint.every > 0. Otherwise the run would train `every` steps and then stop at
// its first save. Throws usage_error (exit 2) naming the directory and the reason. Rank 0.
void require_writable_checkpoint_dir(const Config& config);

// The keys that differ between the checkpoint's config and this run's, as one log line of
// `key: old -> new`: first those that change the training (hyper-parameters, data, precision,
// train.steps: the continuation is then not the uninterrupted run), then those that only
// place the same computation differently (layout, run and checkpoint settings). Empty line:
// nothing changed.
struct SettingChanges {
  std::string line;
  bool changes_training = false;
};
SettingChanges describe_changes(const Config& now, const std::string& saved_toml);

// When the checkpoint found is already at or beyond train.steps: which run it is and the
// two real ways on (raise train.steps; a run.dir, or checkpoint.dir, of its own for a new
// run: checkpoint.resume = "never" refuses a directory that holds checkpoints). Empty when
// there are steps to train.
std::string nothing_to_train(const Config& config, const ResumePoint& resume);

// Saves on the configured interval (collective).
//
// checkpoint.async = false: save() writes, commits, verifies and prunes before it returns.
// checkpoint.async = true: save() copies this rank's share to host memory (a Snapshot) and a
// background thread (AsyncSave) does the rest while training goes on; every guarantee of a
// save holds (docs/checkpoint-format.md). At most one save is in flight: save() first waits
// for the previous one (logged with the wait). poll() at every step boundary and finish()
// before the run ends take its verdict, the same on every rank at the same step; a failure
// then acts as a failed save does (exit 4, or logged with on_write_error = "continue").
class AsyncSave;
class Checkpointer {
 public:
  // Collective when checkpoint.async (the background save's communicator is duplicated);
  // `watchdog`: the main watchdog's options, for the background one.
  Checkpointer(const Config& config, Stage& stage, parallel::ProcessGroups& groups,
               spdlog::logger& log, const parallel::Watchdog::Options* watchdog = nullptr);
  ~Checkpointer();  // waits for a save in flight

  // checkpoint.every > 0 and `steps_done` is a multiple of it or the run's last step.
  bool due(int64_t steps_done) const;
  // Writes `state` with this rank's part, verifies the new checkpoint (every rank reading a
  // share), then deletes what checkpoint.keep no longer covers. A failure leaves the previous
  // checkpoints as they were; it throws nupipe::Error (4) with on_write_error = "stop", else
  // is logged and returns false. Asynchronous: returns once the snapshot is taken (false when
  // the previous save, waited for first, failed under "continue").
  bool save(const checkpoint::TrainingState& state, const char* why);
  // Collective, at a step boundary: a background save that has ended on every rank is
  // collected (its verdict as save()'s). No-op without one in flight.
  bool poll();
  // Collective: waits for the save in flight and collects it (the run's end, a stop).
  bool finish();
  // Before the optimizer changes the weights and moments: waits until the snapshot of a
  // background save in flight has copied them (no-op when synchronous or already copied).
  void before_update();

  bool async() const { return async_ != nullptr; }
  // Seconds the training thread spent on saves: the whole save when synchronous; waits for
  // snapshots and for a save in flight, and agreements, when asynchronous.
  double seconds_spent() const { return seconds_; }
  double snapshot_seconds() const { return snapshot_s_; }
  double waited_seconds() const { return waited_s_; }
  int saves() const { return saves_; }
  // The snapshot's host memory (MemTag::checkpoint_snapshot), measured and predicted.
  const runtime::MemoryAccounting& host_memory() const { return host_memory_; }
  int64_t snapshot_bytes_predicted() const;

 private:
  struct Committed {
    std::string dir;
    int64_t bytes = 0;
    double save_s = 0.0, verify_s = 0.0;
    std::vector<std::string> deleted;
  };
  checkpoint::CheckpointInfo info_of(const checkpoint::TrainingState& state) const;
  // Save, read-back verification, retention: collective over `comm` (any thread).
  Committed commit(const checkpoint::CheckpointInfo& info, const checkpoint::RankPart& part,
                   parallel::MpiCommunicator& comm) const;
  void log_committed(const char* why, int64_t step, const Committed& c,
                     const std::string& extra) const;
  bool failed(const Error& e, int64_t step);  // rethrows unless on_write_error = "continue"
  bool save_async(const checkpoint::TrainingState& state, const char* why);
  bool collect();

  const Config& cfg_;
  Stage& stage_;
  parallel::ProcessGroups& groups_;
  spdlog::logger& log_;
  std::vector<runtime::TensorSpec> global_specs_;
  double seconds_ = 0.0, snapshot_s_ = 0.0, waited_s_ = 0.0;
  int saves_ = 0;
  runtime::MemoryAccounting host_memory_;
  checkpoint::Snapshot snapshot_;
  std::unique_ptr<AsyncSave> async_;
  // The save in flight: why, the training's stall for it so far, its result (set by the
  // background thread, read after it is joined).
  const char* pending_why_ = "";
  double pending_stall_s_ = 0.0;
  Committed pending_;
};

// The nupipe version recorded in checkpoints and printed by --version.
const char* nupipe_version();

}  // namespace nupipe::launcher
