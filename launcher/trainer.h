// trainer.h: the training loop of one rank of the pp x dp grid: data, its model slice, the
// pipeline schedule, gradient reductions, AdamW, LR schedule, clipping,
// gradient accumulation, validation, metrics.jsonl and the readable log line.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "checkpoint/training_state.h"
#include "launcher/config.h"
#include "parallel/comm/topology.h"
#include "parallel/session/world.h"
#include "runtime/stage_model.h"

namespace nupipe::launcher {

struct TrainResult {
  double final_loss = 0.0;     // mean training loss of the last step
  double final_val_loss = -1.0;
  double loss_floor = -1.0;
  int steps = 0;               // the step count reached (train.steps unless stopped)
  int first_step = 0;          // where this run started (a checkpoint's step, or 0)
  bool stopped = false;        // a stop signal ended it early (after saving, by default)
  // Set when the checkpoint found is at or beyond train.steps: which run, and how on (the
  // run ends without touching run.dir).
  std::string nothing_to_train;
  std::vector<double> losses;  // every step's mean training loss run here (identical on every rank)
};

class Checkpointer;
class OutcomeRecorder;

struct TrainHooks {
  // Called on every rank after the last step, with the rank's model slice.
  std::function<void(const runtime::StageModel&, parallel::ProcessGroups&)> on_finish;
  // Called on every rank once the start state is loaded, before the first step (tests save
  // a resharded checkpoint here: checkpointer.save(state, ...)).
  std::function<void(Checkpointer&, const checkpoint::TrainingState&)> on_start;
  // Given run.dir's lock once it is taken (before that nothing is recorded), told of every
  // step done, and told by the watchdog of a peer failure (launcher/outcome.h). Without it
  // the lock is released when train() returns.
  OutcomeRecorder* outcome = nullptr;
};

// Runs training up to config.train.steps, from the newest checkpoint when there is one
// (checkpoint.resume). Validates the data and the checkpoint first, then prepares run.dir
// (config.toml, train.log, metrics.jsonl cut to the resumed step). Saves checkpoints on
// checkpoint.every and on a stop signal. Throws nupipe::Error on bad data (3, before anything
// is written), a run.dir that may not be continued (2), a damaged or incompatible checkpoint
// or a failed save (4), a failed peer (5) or a non-finite loss (6).
TrainResult train(const Config& config, const parallel::World& world,
                  const std::shared_ptr<spdlog::logger>& log, const TrainHooks& hooks = {});

}  // namespace nupipe::launcher
