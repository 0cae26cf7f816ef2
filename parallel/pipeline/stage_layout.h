// stage_layout.h: which transformer blocks each pipeline stage holds, built from
// parallel.stage_layers and validated here and only here (a bad split is refused, never repaired).
#pragma once

#include <string>
#include <vector>

#include "parallel/pipeline/options.h"
#include "runtime/stage_model.h"
#include "runtime/model_config.h"

namespace nupipe::parallel {

struct StageLayout {
  std::vector<runtime::StageSlice> stages;  // one per pipeline stage, contiguous, covering [0, n_layer)
  int n_layer = 0;
};

// `pipeline` stages over `n_layer` blocks.
//   uniform:       n_layer / pipeline blocks each, the remainder one extra each to the LAST
//                  stages (under 1F1B the first stage keeps the most microbatches in flight).
//   explicit_list: exactly as given.
//   automatic:     the planner's to resolve (parallel/plan/planner.h): refused here, after
//                  checking that a split exists at all.
// Rules: one entry per stage, none negative, summing to n_layer; a stage without blocks is
// allowed only as the first (embedding only) or the last (final LayerNorm, head and loss only)
// of two or more stages. Stage 0 has embedding = true, the last stage head = true.
// Throws nupipe::usage_error naming parallel.stage_layers (or parallel.pipeline /
// model.n_layer when those are below 1), showing the split and what is wrong, with a hint.
StageLayout make_stage_layout(const StageLayersSpec& spec, int pipeline, int n_layer);

// The layout of an explicit list of blocks per stage (the planner's answer), validated.
StageLayout layout_from_counts(const std::vector<int>& counts, int n_layer);

// [2, 2, 3, 3]: a list as messages and TOML write it.
std::string format_list(const std::vector<int>& values);

// Blocks per stage, first to last: [2, 2, 3, 3].
std::vector<int> layer_counts(const StageLayout& layout);

// The spec as a TOML value: "uniform", "auto" or [2, 2, 3, 3] (used by messages and to_toml).
std::string format_stage_layers(const StageLayersSpec& spec);

// Blocks of each stage of `layout` that recompute, from train.recompute: "none" 0, "full" all,
// a list its entries. Throws nupipe::usage_error naming train.recompute when the list does not
// have one entry per stage or an entry is negative or more than the stage's blocks.
std::vector<int> recompute_blocks(const RecomputeSpec& spec, const StageLayout& layout);
// "none", "full" or [0, 2, 1] as a TOML value.
std::string format_recompute(const RecomputeSpec& spec);

// A readable table for the log, one row per stage: world ranks (rank = stage * data + replica),
// blocks [lo, hi), what the stage carries besides blocks, parameter elements (the tied token
// embedding counted on every stage holding a copy) and activation bytes per token kept from
// forward to backward, both from runtime::stage_specs / stage_costs of the stage's slice.
std::string layout_table(const StageLayout& layout, const runtime::ModelConfig& model, int data);

}  // namespace nupipe::parallel
