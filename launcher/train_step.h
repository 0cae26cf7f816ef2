// train_step.h: one optimizer step of one rank (the pipeline's forwards and backwards, the
// gradient reductions, clipping, AdamW, ZeRO-1's all-gather), and a validation pass.
#pragma once

#include <functional>

#include "launcher/config.h"
#include "launcher/report.h"
#include "launcher/stage.h"
#include "parallel/comm/topology.h"

namespace nupipe::launcher {

// Runs step `step` (its batch and learning rate are functions of the step alone). Whether any
// rank received a stop signal by the end of its pipeline work travels with the loss's
// all-reduce and comes back in StepStats::stop on every rank. Throws nupipe::Error (6) on a
// non-finite loss. before_update (when given) runs just before the optimizer's update, the
// first change of the weights and moments in the step.
StepStats run_step(Stage& stage, const Config& config, parallel::ProcessGroups& groups, int step,
                   const std::function<void()>& before_update = {});

// Mean validation loss over train.val_batches micro-batches per replica (collective).
double validate(Stage& stage, const Config& config, parallel::ProcessGroups& groups);

}  // namespace nupipe::launcher
