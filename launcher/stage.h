// stage.h: everything one rank of the pp x dp grid trains with, built in two phases: the
// inputs that can refuse a run (data, backend) before run.dir is touched, then its slice of
// the model, the optimizer and the pipeline executor.
#pragma once

#include <memory>

#include <spdlog/logger.h>

#include "launcher/config.h"
#include "launcher/dataset.h"
#include "optim/zero.h"
#include "parallel/plan/cost_model.h"
#include "parallel/plan/planner.h"
#include "parallel/comm/tensor_transport.h"
#include "parallel/pipeline/executor.h"
#include "parallel/pipeline/stage_layout.h"
#include "parallel/comm/topology.h"
#include "parallel/pipeline/trace.h"
#include "parallel/session/world.h"
#include "runtime/backend.h"
#include "runtime/stage_model.h"

namespace nupipe::launcher {

struct Stage {
  // The run's shape.
  runtime::ModelConfig model_config;  // [model] with train.loss_chunk: the model that runs
  parallel::StageLayout layout;
  runtime::StageSlice slice;
  std::vector<int> recompute;  // blocks of each stage that recompute in backward
  parallel::ScheduleKind schedule = parallel::ScheduleKind::one_f_one_b;
  int micro = 1, n_micro = 1;
  int64_t tokens_per_micro = 0, tokens_per_step = 0;
  // runtime.calibration's measured pass times for the planner (none: runtime.tflops' rates).
  parallel::PassTimes passes;
  double step_elements_per_s = 0.0;
  // Inputs.
  Dataset data;
  std::unique_ptr<runtime::BatchSampler> train_sampler, val_sampler;
  std::unique_ptr<runtime::Backend> backend;
  parallel::CommChoice comm;  // what carries the device tensors (runtime.comm resolved)
  int threads = 1;  // runtime.threads resolved (phase 1)
  // The slice, its optimizer and its schedule's executor.
  std::unique_ptr<runtime::StageModel> model;
  std::unique_ptr<optim::ZeroOptimizer> optimizer;
  std::unique_ptr<parallel::Trace> trace;
  std::unique_ptr<parallel::PipelineExecutor> executor;
  // Costs (layer cost descriptors) of the whole model and of this stage.
  runtime::LayerCost model_cost, stage_cost;
  int64_t model_params = 0;
  std::vector<parallel::StageMemory> plan;  // expected bytes per rank of every stage
  std::vector<int64_t> budgets;              // bytes a rank of each stage may use
  std::string plan_note;                     // the planner's choice, for the log
  std::string schedule_note;                 // parallel.schedule = "auto"'s choice, for the log
  std::vector<std::string> budget_warnings;  // stages close to the budget, for the log
};

// Phase 1 (collective: every rank agrees on the verdict): data, samplers, backend and the
// groups' device data plane (runtime.comm; the trainer resets it before the backend goes). Throws
// nupipe::Error with the data (3) or usage (2) code on bad input, on every rank.
// The stage split is resolved here once: parallel.stage_layers as given, or the planner's
// ("auto") within the rank budget; a stage predicted to exceed the budget is refused (2).
void open_stage_inputs(Stage& stage, const Config& config, const parallel::World& world,
                       parallel::ProcessGroups& groups);

// Phase 2: the model slice (initialised from train.seed unless `initialize` is false: a
// checkpoint is about to overwrite it), the optimizer (ZeRO-1 or replicated), the trace and the
// executor. Does not communicate.
void build_stage(Stage& stage, const Config& config, parallel::ProcessGroups& groups,
                 bool initialize = true);

// The start-up report: data, model, parallel layout, expected memory per stage, rank 0's
// allocator (rank 0's logger only prints).
void log_stage(const Stage& stage, const Config& config, const parallel::World& world,
               spdlog::logger& log);

}  // namespace nupipe::launcher
