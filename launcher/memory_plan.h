// memory_plan.h: the bytes every stage of a run is expected to hold per rank (parameters,
// gradients, optimizer state, in-flight activations, workspace), from the layer cost
// descriptors, the schedule and the ZeRO setting, before anything is allocated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "launcher/config.h"
#include "parallel/stage_layout.h"

namespace nupipe::launcher {

struct StageMemory {
  int64_t params = 0, grads = 0, optimizer = 0, activations = 0, workspace = 0;
  int in_flight = 0;  // microbatches whose activations the schedule keeps at once
};

// One entry per stage of `layout` for the run described by `config` (model: `model`).
std::vector<StageMemory> plan_stage_memory(const Config& config, const runtime::ModelConfig& model,
                                           const parallel::StageLayout& layout);
// The same as a table for the start-up log.
std::string stage_memory_table(const std::vector<StageMemory>& stages);

}  // namespace nupipe::launcher
