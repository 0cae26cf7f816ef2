// report.h: what a run tells its user: the start-up tables (memory per stage and rank 0's
// allocator), the per-step log line and metrics.jsonl record, and their format helpers.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "optim/zero.h"
#include "parallel/plan/cost_model.h"
#include "runtime/backend.h"
#include "runtime/layers/layer_cost.h"

namespace nupipe::launcher {

std::string format_duration(double seconds);  // "42s", "3m05s", "2h07m"
std::string format_rate(double per_s);        // "950", "12.3k", "1.25M"
std::vector<std::string> split_lines(const std::string& text);
void log_lines(spdlog::logger& log, const std::string& text, const std::string& indent = "");

// Rank 0's allocator-accounted memory against the layer cost descriptors.
void log_memory_table(spdlog::logger& log, const runtime::LayerCost& stage_cost,
                      const parallel::StageMemory& predicted, const runtime::Backend& backend,
                      int64_t tokens_per_micro, const optim::ZeroOptimizer& optimizer);

// One step's figures, identical on every rank (reduced over the world).
struct StepStats {
  int step = 0;
  double loss = 0.0;
  double grad_norm = 0.0;
  float lr = 0.0f;
  double bubble = 0.0;    // pipeline idle share of the step (mean over ranks)
  double seconds = 0.0;   // wall time of the step
  int64_t data_bytes = 0; // bytes this rank sent on its data group
  bool stop = false;      // some rank received a stop signal
  double val_loss = -1.0; // when validated after this step
};

// The metrics.jsonl record: step (steps completed, as the log's "step 10/400" and the
// checkpoint step_00000010 count them), timestamp (ISO-8601 UTC of `at`), tokens_seen (training
// tokens consumed so far, over every restart), loss, lr, grad_norm, tokens_per_s, step_ms,
// bubble_fraction, gflops (and val_loss).
nlohmann::json metrics_record(const StepStats& s, int64_t tokens_per_step, double flops_per_token,
                              int64_t tokens_seen, std::chrono::system_clock::time_point at);
// "step 10/400 | loss 2.3456 | ..."; steps_run/elapsed_s drive the ETA.
std::string step_line(const StepStats& s, int total_steps, int64_t tokens_per_step,
                      bool pipelined, int steps_run, double elapsed_s);

}  // namespace nupipe::launcher
