// calibrate.h: `nupipe plan --calibrate`: each pass of one microbatch (a block's forward, its
// backward fused and in two passes, the embedding's, the head's) and the optimizer step's
// per-element cost, timed on this machine's cpu backend at the config's shapes.
#pragma once

#include <string>

#include "parallel/plan/planner.h"
#include "runtime/model_config.h"

namespace nupipe::launcher {

struct Calibration {
  parallel::PassTimes passes;        // seconds per microbatch
  double step_elements_per_s = 0;    // zeroing, the squared norm and AdamW, per parameter
};

// Every pass timed apart, each the median of at least 5 runs and 0.3 s (not the fastest: a
// training step's passes run at their typical speed, not their best): a slice of up to two
// blocks (per block: its seconds halved), the embedding alone, the head alone.
Calibration calibrate(const runtime::ModelConfig& model, int micro_batch, int threads);

// What a calibration was timed on: the passes' times hold for these only.
struct CalibrationShape {
  runtime::ModelConfig model;
  int micro_batch = 0, threads = 0;
};

// `nupipe plan --calibrate --save-calibration FILE` writes it (JSON); `--calibration FILE`
// reads it back instead of timing, refusing (usage_error, naming the field and the fix) a file
// that is not one, or one timed on another model shape, micro_batch or thread count.
void save_calibration(const std::string& path, const Calibration& c, const CalibrationShape& on);
// `source` names where the path came from in errors ("--calibration", "runtime.calibration").
Calibration load_calibration(const std::string& path, const CalibrationShape& expected,
                             const std::string& source = "--calibration");

// The calibration as the line `nupipe plan` prints.
std::string describe(const Calibration& c, int threads, int micro_batch);

}  // namespace nupipe::launcher
