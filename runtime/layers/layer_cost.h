// layer_cost.h: what one layer costs, read by the memory report and (later) the planner.
// Computed from the same shapes the layer allocates, and checked against the allocator.
#pragma once

#include <cstdint>

namespace nupipe::runtime {

struct LayerCost {
  int64_t params = 0;                      // parameter elements
  int64_t activation_bytes_per_token = 0;  // kept from forward until backward
  int64_t recompute_bytes_per_token = 0;   // kept when the layer recomputes in backward (its input)
  int64_t workspace_bytes_per_token = 0;   // transient, freed before the layer returns
  double flops_per_token = 0.0;            // forward + backward

  LayerCost& operator+=(const LayerCost& o) {
    params += o.params;
    activation_bytes_per_token += o.activation_bytes_per_token;
    recompute_bytes_per_token += o.recompute_bytes_per_token;
    workspace_bytes_per_token = workspace_bytes_per_token > o.workspace_bytes_per_token
                                    ? workspace_bytes_per_token
                                    : o.workspace_bytes_per_token;  // transient: max, not sum
    flops_per_token += o.flops_per_token;
    return *this;
  }
};

}  // namespace nupipe::runtime
