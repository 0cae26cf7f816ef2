// memory_plan.cpp: expected per-stage memory from cost descriptors, schedule and ZeRO.
#include "launcher/memory_plan.h"

#include <fmt/format.h>

#include "parallel/schedule.h"
#include "runtime/allocator.h"
#include "runtime/gpt_model.h"

namespace nupipe::launcher {

std::vector<StageMemory> plan_stage_memory(const Config& cfg, const runtime::ModelConfig& mc,
                                           const parallel::StageLayout& layout) {
  const int pp = static_cast<int>(layout.stages.size()), dp = cfg.parallel.data;
  const bool zero = cfg.parallel.zero == 1;
  const int64_t tokens = static_cast<int64_t>(cfg.train.micro_batch) * mc.seq_len;
  const auto kind = parallel::parse_schedule_kind(cfg.parallel.schedule);
  std::vector<StageMemory> out;
  for (int s = 0; s < pp; ++s) {
    const runtime::StageSlice& slice = layout.stages[s];
    int64_t n = 0;
    for (const runtime::TensorSpec& t : runtime::gpt_specs(mc, slice)) n += t.numel();
    runtime::LayerCost cost;
    for (const auto& [name, c] : runtime::gpt_costs(mc, slice)) cost += c;
    const int64_t padded = zero ? (n + dp - 1) / dp * dp : n, shard = padded / dp;
    StageMemory m;
    m.params = 4 * padded;
    m.grads = 4 * padded + (zero ? 4 * shard : 0);  // ZeRO-1 keeps the reduce-scattered shard
    m.optimizer = 8 * (zero ? shard : n);           // AdamW exp_avg + exp_avg_sq
    m.in_flight = parallel::max_in_flight(parallel::make_schedule(kind, pp, s, cfg.microbatches()));
    // A stage after the first also keeps the activation it received (its first block's input).
    const int64_t per_token = cost.activation_bytes_per_token + (s > 0 ? 4 * mc.d_model : 0);
    m.activations = per_token * tokens * m.in_flight;
    m.workspace = cost.workspace_bytes(tokens);
    out.push_back(m);
  }
  return out;
}

std::string stage_memory_table(const std::vector<StageMemory>& stages) {
  using runtime::format_bytes;
  std::string t = fmt::format("{:<6}{:>12}{:>12}{:>12}{:>14}{:>12}{:>12}\n", "stage", "params",
                              "grads", "optimizer", "activations", "in flight", "workspace");
  for (size_t s = 0; s < stages.size(); ++s) {
    const StageMemory& m = stages[s];
    t += fmt::format("{:<6}{:>12}{:>12}{:>12}{:>14}{:>12}{:>12}\n", s, format_bytes(m.params),
                     format_bytes(m.grads), format_bytes(m.optimizer),
                     format_bytes(m.activations), m.in_flight, format_bytes(m.workspace));
  }
  return t;
}

}  // namespace nupipe::launcher
