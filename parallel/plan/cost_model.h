// cost_model.h: the bytes every stage of a run holds per rank (parameters, gradients,
// optimizer state, activations and transient buffers at their peaks), from the layers' cost
// descriptors, the schedule, ZeRO-1 and activation recompute, before anything is allocated.
// The start-up table, memory.json's check against the allocator and the planner read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stage_layout.h"
#include "runtime/model_config.h"

namespace nupipe::parallel {

// What the memory of a run depends on besides the model and the split.
struct CostInputs {
  int data = 1;                     // data-parallel replicas per stage
  int zero = 0;                     // 1: ZeRO-1 (optimizer state and a gradient shard per 1/data)
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int microbatches = 1;             // per replica and step
  int micro_batch = 1;              // sequences per microbatch
  std::vector<int> recompute;       // blocks of each stage that recompute (empty: none)
};

// Peak bytes per allocator tag (runtime/allocator.h) of one rank over a training step.
struct StageMemory {
  int64_t params = 0, grads = 0, optimizer = 0, activations = 0, workspace = 0,
          loss_workspace = 0;
  int64_t weight_inputs = 0;  // what B keeps for W (schedules that split the backward)
  int in_flight = 0;         // microbatches whose activations the schedule keeps at once
  int recompute_blocks = 0;
  int64_t kept_per_microbatch = 0;  // activation bytes one microbatch keeps forward -> backward
  // The sum of the tags' peaks: a bound on the rank's peak (the transient tags peak at
  // different moments), the number budgets are checked against.
  int64_t total() const {
    return params + grads + optimizer + activations + workspace + loss_workspace +
           weight_inputs;
  }
};

// What a slice's memory and time are made of, from its specs and cost descriptors: the part
// of the cost that depends only on which layers it holds (the planner computes it once per
// (embedding?, head?, blocks) and reuses it).
struct StageShape {
  int64_t params = 0;        // parameter elements
  runtime::LayerCost cost;   // every layer of the slice
  runtime::LayerCost others; // its layers other than blocks (embedding, head)
  runtime::LayerCost head;   // the head's alone (none without it)
  int blocks = 0;
};
StageShape stage_shape(const runtime::ModelConfig& model, const runtime::StageSlice& slice);

// Where a stage sits in the pipeline and what its schedule does: what its activations and
// transient buffers depend on besides its layers.
struct StageRole {
  bool first = true, last = true;
  int in_flight = 1;            // microbatches between forward and backward at once
  std::vector<Action> actions;  // the stage's schedule
};
StageRole stage_role(ScheduleKind kind, int stages, int stage, int microbatches);

// Peak weight_inputs-tag bytes of a stage over one step (0 for a fused backward): each
// microbatch's B keeps what its W reads (the head's weight gradients come with its forward:
// nothing of the head) until its W; replayed action by action.
int64_t stage_weight_inputs_peak(const StageShape& shape, const StageRole& role, int64_t tokens);

// One stage of `stages` holding `slice` (stage index `stage`), `recompute_blocks` of its blocks
// recomputing.
StageMemory stage_memory(const runtime::ModelConfig& model, const runtime::StageSlice& slice,
                         int stage, int stages, const CostInputs& in, int recompute_blocks);
// The same from a precomputed shape and role, and the stage's workspace peak when given (>= 0):
// it depends on the blocks only through whether there are none, one or more, so the planner
// replays it once per stage and class.
StageMemory stage_memory(const runtime::ModelConfig& model, const StageShape& shape,
                         const StageRole& role, const CostInputs& in, int recompute_blocks,
                         int64_t workspace = -1);

// Peak workspace-tag bytes of a stage over one step: the executor's buffers replayed action by
// action (parallel/pipeline/executor.cpp), with each backward's own transient buffers from the
// layers' descriptors on top.
int64_t stage_workspace_peak(const runtime::ModelConfig& model, const StageShape& shape,
                             const StageRole& role, int64_t tokens);

// Forward and backward FLOPs of one microbatch on a stage (recomputed blocks run their
// forward twice: a third of a block's forward + backward FLOPs more each).
double stage_flops_per_microbatch(const runtime::ModelConfig& model,
                                  const runtime::StageSlice& slice, int recompute_blocks,
                                  int micro_batch);
double stage_flops_per_microbatch(const runtime::ModelConfig& model, const StageShape& shape,
                                  int recompute_blocks, int micro_batch);

// One entry per stage of `layout`; `model` is the model that runs (train.loss_chunk applied).
std::vector<StageMemory> plan_stage_memory(const runtime::ModelConfig& model,
                                           const StageLayout& layout, const CostInputs& in);

// Peak activation bytes of one stage: `in_flight` microbatches of `tokens` each keep their
// activations, and a recomputing block briefly holds all of its own again (in its forward, and
// when backward recomputes it) while the earlier blocks of its microbatch keep only their
// outputs. `received_input`: the stage keeps the activation it received (every stage but the
// first).
int64_t stage_activation_peak(const runtime::ModelConfig& model, const runtime::StageSlice& slice,
                              bool received_input, int recompute_blocks, int in_flight,
                              int64_t tokens, int64_t* kept_per_microbatch = nullptr);

// The plan as a table for the start-up log.
std::string stage_memory_table(const std::vector<StageMemory>& stages);

}  // namespace nupipe::parallel
