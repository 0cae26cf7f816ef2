// checkpointing.h: the trainer's side of checkpoints: where a run starts (checkpoint.resume,
// verification, fallback, the model check), what changed since the checkpoint, and saving on
// the configured interval with retention and the write-error policy.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "checkpoint/checkpoint_info.h"
#include "launcher/config.h"
#include "launcher/stage.h"
#include "parallel/comm/topology.h"

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
// A checkpoint of another model (n_layer, d_model, n_head, vocab_size, seq_len,
// tie_embeddings) stops the run with exit code 4 naming every differing key with both values.
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
class Checkpointer {
 public:
  Checkpointer(const Config& config, Stage& stage, parallel::ProcessGroups& groups,
               spdlog::logger& log);

  // checkpoint.every > 0 and `steps_done` is a multiple of it or the run's last step.
  bool due(int64_t steps_done) const;
  // Writes `state` with this rank's part, verifies the new checkpoint (every rank reading a
  // share), then deletes what checkpoint.keep no longer covers. A failure leaves the previous
  // checkpoints as they were; it throws nupipe::Error (4) with on_write_error = "stop", else
  // is logged and returns false.
  bool save(const checkpoint::TrainingState& state, const char* why);
  double seconds_spent() const { return seconds_; }
  int saves() const { return saves_; }

 private:
  const Config& cfg_;
  Stage& stage_;
  parallel::ProcessGroups& groups_;
  spdlog::logger& log_;
  std::vector<runtime::TensorSpec> global_specs_;
  double seconds_ = 0.0;
  int saves_ = 0;
};

// The nupipe version recorded in checkpoints and printed by --version.
const char* nupipe_version();

}  // namespace nupipe::launcher
