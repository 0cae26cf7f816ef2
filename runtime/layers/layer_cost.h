// layer_cost.h: what one layer costs, read by the cost model (memory report, planner).
// Computed from the same shapes the layer allocates, and checked against the allocator.
#pragma once

#include <algorithm>
#include <cstdint>

namespace nupipe::runtime {

struct LayerCost {
  int64_t params = 0;                      // parameter elements
  int64_t activation_bytes_per_token = 0;  // kept from forward until backward
  int64_t recompute_bytes_per_token = 0;   // kept when the layer recomputes in backward (its input)
  // Backward's buffers (MemTag::workspace) at their peak: the gradient the layer returns
  // included, the one it receives not. Per token of the call, plus what a call allocates once
  // whatever its tokens (attention's score gradient, one sequence at a time).
  int64_t backward_bytes_per_token = 0;
  int64_t backward_fixed_bytes = 0;
  // A second phase of backward whose peak is another affine function of the tokens (a llama
  // block: its wide MLP's buffers per token against attention's per-sequence score gradient):
  // the backward peak is the larger of the two at the call's tokens. 0: one phase.
  int64_t backward2_bytes_per_token = 0;
  int64_t backward2_fixed_bytes = 0;
  // The LM head's chunk buffers (MemTag::loss_workspace): chunk_bytes_per_token for each row of
  // a chunk of at most chunk_tokens tokens (0: every token of the call in one chunk).
  int64_t chunk_tokens = 0;
  int64_t chunk_bytes_per_token = 0;
  double flops_per_token = 0.0;            // forward + backward
  // A backward in two passes (StageModel::backward_input, backward_weight): what the input
  // gradient pass keeps for the weight gradient pass (MemTag::weight_inputs), per token of the
  // call, plus what a call keeps whatever its tokens. Held from B until W (the LM head's from
  // its forward, StageModel::head_forward_input). The fused backward holds none of it.
  int64_t weight_bytes_per_token = 0;
  int64_t weight_fixed_bytes = 0;

  int64_t backward_bytes(int64_t tokens) const {
    return std::max(backward_bytes_per_token * tokens + backward_fixed_bytes,
                    backward2_bytes_per_token * tokens + backward2_fixed_bytes);
  }
  int64_t weight_bytes(int64_t tokens) const {
    return weight_bytes_per_token * tokens + weight_fixed_bytes;
  }
  int64_t loss_workspace_bytes(int64_t tokens) const {
    return chunk_bytes_per_token * (chunk_tokens > 0 ? std::min(tokens, chunk_tokens) : tokens);
  }

  LayerCost& operator+=(const LayerCost& o) {
    params += o.params;
    activation_bytes_per_token += o.activation_bytes_per_token;
    recompute_bytes_per_token += o.recompute_bytes_per_token;
    weight_bytes_per_token += o.weight_bytes_per_token;  // kept side by side until W
    weight_fixed_bytes += o.weight_fixed_bytes;
    // Transient buffers of different layers do not coexist: the largest, not the sum (a block
    // composes its own, whose parts do overlap; see Block::cost).
    backward_bytes_per_token = std::max(backward_bytes_per_token, o.backward_bytes_per_token);
    backward_fixed_bytes = std::max(backward_fixed_bytes, o.backward_fixed_bytes);
    backward2_bytes_per_token = std::max(backward2_bytes_per_token, o.backward2_bytes_per_token);
    backward2_fixed_bytes = std::max(backward2_fixed_bytes, o.backward2_fixed_bytes);
    chunk_tokens = std::max(chunk_tokens, o.chunk_tokens);
    chunk_bytes_per_token = std::max(chunk_bytes_per_token, o.chunk_bytes_per_token);
    flops_per_token += o.flops_per_token;
    return *this;
  }
};

}  // namespace nupipe::runtime
