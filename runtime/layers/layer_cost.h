// layer_cost.h: what one layer costs, read by the memory report and (later) the planner.
// Computed from the same shapes the layer allocates, and checked against the allocator.
#pragma once

#include <algorithm>
#include <cstdint>

namespace nupipe::runtime {

struct LayerCost {
  int64_t params = 0;                      // parameter elements
  int64_t activation_bytes_per_token = 0;  // kept from forward until backward
  int64_t recompute_bytes_per_token = 0;   // kept when the layer recomputes in backward (its input)
  int64_t workspace_bytes_per_token = 0;   // transient, freed before the layer returns
  // A layer that also holds transient buffers for at most `chunk_tokens` tokens at a time,
  // however many a call has (the LM head's loss chunk): chunk_bytes_per_token of them per
  // chunk token, on top of chunk_base_bytes_per_token per token of the call. 0: none.
  int64_t chunk_tokens = 0;
  int64_t chunk_bytes_per_token = 0;
  int64_t chunk_base_bytes_per_token = 0;
  double flops_per_token = 0.0;            // forward + backward

  // Transient bytes of a microbatch of `tokens`: of this layer, or for a sum of layers of the
  // largest one (exact with at most one chunked layer in the sum, as on any stage).
  int64_t workspace_bytes(int64_t tokens) const {
    const int64_t plain = workspace_bytes_per_token * tokens;
    if (chunk_tokens <= 0) return plain;
    return std::max(plain, chunk_base_bytes_per_token * tokens +
                               chunk_bytes_per_token * std::min(tokens, chunk_tokens));
  }

  LayerCost& operator+=(const LayerCost& o) {
    params += o.params;
    activation_bytes_per_token += o.activation_bytes_per_token;
    recompute_bytes_per_token += o.recompute_bytes_per_token;
    // transient: max, not sum
    workspace_bytes_per_token = std::max(workspace_bytes_per_token, o.workspace_bytes_per_token);
    chunk_tokens = std::max(chunk_tokens, o.chunk_tokens);
    chunk_bytes_per_token = std::max(chunk_bytes_per_token, o.chunk_bytes_per_token);
    chunk_base_bytes_per_token = std::max(chunk_base_bytes_per_token, o.chunk_base_bytes_per_token);
    flops_per_token += o.flops_per_token;
    return *this;
  }
};

}  // namespace nupipe::runtime
