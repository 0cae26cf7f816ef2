// lm_head.h: final LayerNorm (llama: RMSNorm), LM head (tied to the token embedding or its
// own matrix) and softmax cross-entropy, forward and backward run `loss_chunk` tokens at a time.
#pragma once

#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

// The [tokens x vocab] logits never exist at once: each chunk of K = cfg.loss_chunk tokens
// (all tokens when 0) goes LayerNorm -> logits [K, V] -> loss -> d(logits) -> its share of
// dW and of dx, through one set of buffers (MemTag::loss_workspace) reused by every chunk.
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

  // The same in two passes, bit for bit. forward_input: the loss and *dx as forward_backward
  // computes them, no parameter gradient; it keeps in `w` what backward_weight reads: x (the
  // caller's, kept as it is: the caller retags or copies it), a copy of the targets and the
  // gradient of the final LayerNorm's output [N, C] (fp32, MemTag::weight_inputs).
  // backward_weight recomputes each chunk's logits and their gradient (the [N x V] logits are
  // never held) and accumulates the head's dW and the LayerNorm's dw, db, chunk by chunk as
  // forward_backward does: one more logits product and softmax than the fused pass.
  struct WeightInputs {
    Tensor x, targets, dln;
    float dloss = 0.0f;
  };
  double forward_input(const Tensor& x, const Tensor& targets, float dloss, Tensor& dx,
                       WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;
  // The logits [V] of row `row` of x [N, C] (fp32, copied to the host): the final LayerNorm
  // and the head product as in forward, without the loss (text generation).
  std::vector<float> logits(const Tensor& x, int64_t row) const;

 private:
  // The chunk buffers (MemTag::loss_workspace) for k rows.
  struct Chunk {
    Tensor ln, mean, rstd, logits;
  };
  Chunk chunk_buffers(Backend& be, int64_t K) const;
  // One chunk's LayerNorm and logits: rows [s, s + k) of x into c.ln, c.mean, c.rstd, c.logits.
  void chunk_logits(const Chunk& c, const Tensor& x, int64_t s, int64_t k) const;
  // The final norm's backward over k rows at x: its input part into dx, its weight part.
  void norm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, const Chunk& c,
                           int64_t k) const;
  void norm_backward_weight(ConstDevPtr dout, ConstDevPtr x, const Chunk& c, int64_t k) const;
  bool rms_;                            // llama: RMSNorm (no bias, no mean)
  Tensor ln_w_, ln_b_, ln_dw_, ln_db_;  // final LayerNorm [C] (RMSNorm: the weight only)
  Tensor w_, dw_;                       // [V, C]
  int64_t V_, C_;
  int64_t chunk_;  // 0: all tokens at once
  float eps_;
};

}  // namespace nupipe::runtime
