// lm_head.h: final LayerNorm, LM head (tied to the token embedding or its own matrix) and
// softmax cross-entropy, forward and backward fused: the logits live only inside the call.
#pragma once

#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

class LmHead {
 public:
  static constexpr const char* kUntiedWeight = "head.lm.weight";
  static void add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  LmHead(const ParamStore& store, const ModelConfig& cfg);

  // Sum of per-token cross-entropies of x [N, C] against targets i32 [N]. With dx given,
  // also the backward: each token's loss gradient is `dloss` (1 / tokens averaged over),
  // parameter gradients accumulate and *dx receives d(loss)/dx.
  double forward_backward(const Tensor& x, const Tensor& targets, float dloss, Tensor* dx) const;
  double forward(const Tensor& x, const Tensor& targets) const;

 private:
  LayerNorm ln_f_;
  Tensor w_, dw_;  // [V, C]
  int64_t V_, C_;
};

}  // namespace nupipe::runtime
