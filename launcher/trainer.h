// trainer.h: the training loop of one rank of the pp x dp grid: data, its model slice, the
// pipeline schedule, gradient reductions, AdamW, LR schedule, clipping,
// gradient accumulation, validation, metrics.jsonl and the readable log line.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <spdlog/logger.h>

#include "launcher/config.h"
#include "parallel/topology.h"
#include "parallel/world.h"
#include "runtime/gpt_model.h"

namespace nupipe::launcher {

struct TrainResult {
  double final_loss = 0.0;     // mean training loss of the last step
  double final_val_loss = -1.0;
  double loss_floor = -1.0;
  int steps = 0;
  std::vector<double> losses;  // every step's mean training loss (identical on every rank)
};

struct TrainHooks {
  // Called on every rank after the last step, with the rank's model slice.
  std::function<void(const runtime::GptModel&, parallel::ProcessGroups&)> on_finish;
};

// Runs config.train.steps steps. Validates the data first, then creates run.dir with
// config.toml, train.log and metrics.jsonl. Throws nupipe::Error on bad data (3, before
// anything is written), a run.dir already in use (2) or a non-finite loss (6).
TrainResult train(const Config& config, const parallel::World& world,
                  const std::shared_ptr<spdlog::logger>& log, const TrainHooks& hooks = {});

}  // namespace nupipe::launcher
