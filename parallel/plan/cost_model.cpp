// cost_model.cpp: expected per-stage memory from cost descriptors, schedule, ZeRO and recompute.
#include "parallel/plan/cost_model.h"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/allocator.h"
#include "runtime/stage_model.h"

namespace nupipe::parallel {

namespace {

int64_t activation_peak(const runtime::ModelConfig& mc, const StageShape& shape,
                        bool received_input, int recompute_blocks, int in_flight, int64_t tokens,
                        int64_t* kept_out) {
  const runtime::LayerCost block = runtime::block_cost(mc);
  const int n = shape.blocks, k = recompute_blocks;
  const int64_t es = static_cast<int64_t>(runtime::dtype_size(mc.dtype));
  const int64_t received = received_input ? es * mc.d_model : 0;
  const int64_t before = shape.others.activation_bytes_per_token + received;
  // Per token: what precedes the blocks, the recomputing blocks' outputs, the other blocks'
  // whole activations, and the head's.
  const int64_t kept = before + k * block.recompute_bytes_per_token +
                       (n - k) * block.activation_bytes_per_token;
  // A microbatch inside recomputing block k-1 (the last one in forward order, so the one with
  // the most kept outputs before it): those outputs plus the block's whole activations.
  const int64_t during =
      k > 0 ? before + (k - 1) * block.recompute_bytes_per_token + block.activation_bytes_per_token
            : 0;
  if (kept_out) *kept_out = kept * tokens;
  if (in_flight <= 0) return 0;
  return ((in_flight - 1) * kept + std::max(kept, during)) * tokens;
}

}  // namespace

StageShape stage_shape(const runtime::ModelConfig& mc, const runtime::StageSlice& slice) {
  StageShape shape;
  for (const runtime::TensorSpec& t : runtime::stage_specs(mc, slice)) shape.params += t.numel();
  for (const auto& [name, c] : runtime::stage_costs(mc, slice)) {
    shape.cost += c;
    if (name.rfind("blocks.", 0) != 0) shape.others += c;
    if (name == "head") shape.head = c;
  }
  shape.blocks = slice.layer_end - slice.layer_begin;
  return shape;
}

int64_t stage_activation_peak(const runtime::ModelConfig& mc, const runtime::StageSlice& slice,
                              bool received_input, int recompute_blocks, int in_flight,
                              int64_t tokens, int64_t* kept_out) {
  return activation_peak(mc, stage_shape(mc, slice), received_input, recompute_blocks, in_flight,
                         tokens, kept_out);
}

StageRole stage_role(ScheduleKind kind, int stages, int stage, int microbatches) {
  StageRole role;
  role.first = stage == 0;
  role.last = stage == stages - 1;
  role.actions = make_schedule(kind, stages, stage, microbatches);
  role.in_flight = max_in_flight(role.actions);
  return role;
}

// The executor's workspace buffers: the first stage's uploaded token ids, kept until the
// microbatch's backward; the last stage's uploaded targets while the head runs, and the gradient
// the head returns, kept until backward; a gradient received from the next stage, kept until
// backward, which hands on a gradient of the same size to send back (the executor completes the
// previous send after posting one: one stays pending). Inside a backward, the first block (in
// backward order) runs on the stage's gradient; each later one on the gradient the block after
// it returned, while the stage's own is still held.
int64_t stage_workspace_peak(const runtime::ModelConfig& mc, const StageShape& shape,
                             const StageRole& role, int64_t tokens) {
  const int64_t ids = 4 * tokens;                   // int32 token ids or targets
  // a gradient of the hidden states, in the compute precision
  const int64_t hidden = static_cast<int64_t>(runtime::dtype_size(mc.dtype)) * tokens * mc.d_model;
  const int64_t head = role.last ? shape.others.backward_bytes(tokens) : 0;  // the head's dx
  const int64_t chain =
      shape.blocks == 0 ? 0
                        : runtime::block_cost(mc).backward_bytes(tokens) +
                              (shape.blocks > 1 ? hidden : 0);
  int64_t live = 0, peak = 0;
  auto at = [&](int64_t transient) { peak = std::max(peak, live + transient); };
  bool pending = false;  // a gradient send not yet completed
  for (const Action& a : role.actions) {
    switch (a.type) {
      case ActionType::forward:
        if (role.first) live += ids, at(0);
        if (role.last) at(ids + head), live += head;
        break;
      case ActionType::recv_gradient:
        live += hidden, at(0);
        break;
      case ActionType::backward:
      case ActionType::backward_input:  // B runs the same chain of input gradients
        at(chain);
        if (role.first) live -= (role.last ? head : hidden) + ids;  // nothing to send back
        break;
      case ActionType::send_gradient:
        if (pending) live -= hidden;  // the previous send completes
        pending = true;
        break;
      case ActionType::recv_activation:
      case ActionType::send_activation:
        break;  // activations-tag buffers
      case ActionType::backward_weight:
        break;  // writes into the gradients; what it reads B kept under its own tag
    }
  }
  return peak;
}

int64_t stage_weight_inputs_peak(const StageShape& shape, const StageRole& role,
                                 int64_t tokens) {
  // The head's weight gradients come with its forward (parallel/pipeline/executor.cpp): its
  // layers keep nothing for W.
  const int64_t held = shape.cost.weight_bytes(tokens) - shape.head.weight_bytes(tokens);
  int64_t live = 0, peak = 0;
  for (const Action& a : role.actions) {
    if (a.type == ActionType::backward_input) peak = std::max(peak, live += held);
    if (a.type == ActionType::backward_weight) live -= held;
  }
  return peak;
}

StageMemory stage_memory(const runtime::ModelConfig& mc, const StageShape& shape,
                         const StageRole& role, const CostInputs& in, int recompute_blocks,
                         int64_t workspace) {
  const int in_flight = role.in_flight;
  const bool received_input = !role.first;
  const int dp = in.data;
  const bool zero = in.zero == 1;
  const int64_t tokens = static_cast<int64_t>(in.micro_batch) * mc.seq_len;
  const int64_t n = shape.params;
  const int64_t padded = zero ? (n + dp - 1) / dp * dp : n, shard = padded / dp;
  StageMemory m;
  const bool bf16 = mc.dtype == runtime::DType::bf16;
  m.params = static_cast<int64_t>(runtime::dtype_size(mc.dtype)) * padded;  // the compute copy
  m.grads = 4 * padded + (zero && dp > 1 ? 4 * shard : 0);  // ZeRO-1's reduce-scattered shard
  // AdamW exp_avg + exp_avg_sq, and under bf16 the fp32 master weights, of the rank's range
  m.optimizer = (8 + (bf16 ? 4 : 0)) * (zero ? shard : n);
  m.in_flight = in_flight;
  m.recompute_blocks = recompute_blocks;
  m.activations = activation_peak(mc, shape, received_input, recompute_blocks, in_flight, tokens,
                                  &m.kept_per_microbatch);
  m.workspace = workspace >= 0 ? workspace : stage_workspace_peak(mc, shape, role, tokens);
  // The backend's bf16 GEMM scratchpad arena, from the stage's first product on (a stage of
  // only the embedding runs none; fp32 products take none).
  if (bf16 && (shape.blocks > 0 || role.last)) m.workspace += mc.gemm_arena_bytes;
  m.loss_workspace = role.last ? shape.cost.loss_workspace_bytes(tokens) : 0;
  m.weight_inputs = stage_weight_inputs_peak(shape, role, tokens);
  return m;
}

StageMemory stage_memory(const runtime::ModelConfig& mc, const runtime::StageSlice& slice,
                         int stage, int stages, const CostInputs& in, int recompute_blocks) {
  return stage_memory(mc, stage_shape(mc, slice),
                      stage_role(in.schedule, stages, stage, in.microbatches), in,
                      recompute_blocks);
}

double stage_flops_per_microbatch(const runtime::ModelConfig& mc, const StageShape& shape,
                                  int recompute_blocks, int micro_batch) {
  const double per_token =
      shape.cost.flops_per_token + recompute_blocks * runtime::block_cost(mc).flops_per_token / 3.0;
  return per_token * static_cast<double>(micro_batch) * mc.seq_len;
}

double stage_flops_per_microbatch(const runtime::ModelConfig& mc,
                                  const runtime::StageSlice& slice, int recompute_blocks,
                                  int micro_batch) {
  return stage_flops_per_microbatch(mc, stage_shape(mc, slice), recompute_blocks, micro_batch);
}

std::vector<StageMemory> plan_stage_memory(const runtime::ModelConfig& mc,
                                           const StageLayout& layout, const CostInputs& in) {
  const int pp = static_cast<int>(layout.stages.size());
  std::vector<StageMemory> out;
  for (int s = 0; s < pp; ++s) {
    out.push_back(stage_memory(mc, layout.stages[s], s, pp, in,
                               in.recompute.empty() ? 0 : in.recompute.at(s)));
  }
  return out;
}

std::string stage_memory_table(const std::vector<StageMemory>& stages) {
  using runtime::format_bytes;
  // What B keeps for W: a column only where a schedule splits the backward.
  const bool split = std::any_of(stages.begin(), stages.end(),
                                 [](const StageMemory& m) { return m.weight_inputs > 0; });
  std::string t = fmt::format("{:<6}{:>12}{:>12}{:>12}{:>14}{:>12}{:>11}{:>12}{:>12}{}\n",
                              "stage", "params", "grads", "optimizer", "activations",
                              "in flight", "recompute", "workspace", "loss ws",
                              split ? fmt::format("{:>12}", "W inputs") : "");
  for (size_t s = 0; s < stages.size(); ++s) {
    const StageMemory& m = stages[s];
    t += fmt::format("{:<6}{:>12}{:>12}{:>12}{:>14}{:>12}{:>11}{:>12}{:>12}{}\n", s,
                     format_bytes(m.params), format_bytes(m.grads), format_bytes(m.optimizer),
                     format_bytes(m.activations), m.in_flight, m.recompute_blocks,
                     format_bytes(m.workspace), format_bytes(m.loss_workspace),
                     split ? fmt::format("{:>12}", format_bytes(m.weight_inputs)) : "");
  }
  return t;
}

}  // namespace nupipe::parallel
