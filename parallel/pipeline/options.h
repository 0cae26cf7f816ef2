// options.h: parallel layout options ([parallel] in the config): the pp x dp degrees, how the
// transformer blocks are split over the pipeline stages, and the pipeline schedule.
#pragma once

#include <string>
#include <vector>

namespace nupipe::parallel {

// parallel.stage_layers as written: "uniform", an explicit list of blocks per stage, or "auto"
// (the planner). Turned into a StageLayout, and validated, only by make_stage_layout
// (parallel/pipeline/stage_layout.h).
struct StageLayersSpec {
  enum class Kind { uniform, explicit_list, automatic };
  Kind kind = Kind::uniform;
  std::vector<int> layers;  // explicit_list only: blocks on each stage, first to last

  bool operator==(const StageLayersSpec&) const = default;
};

// train.recompute as written: "none", "full" (every block of every stage), a list giving, per
// stage, how many of its blocks keep only their input and recompute the rest in backward (the
// first that many blocks of the stage), or "auto" (the planner chooses, with
// parallel.stage_layers = "auto"). Resolved against a StageLayout, and validated, only by
// recompute_blocks (parallel/pipeline/stage_layout.h).
struct RecomputeSpec {
  enum class Kind { none, full, per_stage, automatic };
  Kind kind = Kind::none;
  std::vector<int> blocks;  // per_stage only

  bool operator==(const RecomputeSpec&) const = default;
};

struct Options {
  int pipeline = 1;                // pipeline stages
  int data = 1;                    // data-parallel replicas per stage
  StageLayersSpec stage_layers;    // blocks per stage
  std::string schedule = "1f1b";   // "1f1b" or "gpipe" (parallel/pipeline/schedule.h)
  int zero = 0;                    // 1: shard optimizer state over the data-parallel ranks (ZeRO-1)
};

}  // namespace nupipe::parallel
