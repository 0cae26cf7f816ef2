// model_config.h: the GPT model's shape and initialisation options ([model] in the config).
// Validated by launcher/config; the model trusts it.
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace nupipe::runtime {

struct ModelConfig {
  int n_layer = 4;
  int d_model = 64;
  int n_head = 4;
  int vocab_size = 256;
  int seq_len = 64;
  bool tie_embeddings = true;  // LM head shares the token embedding matrix
  float init_std = 0.02f;      // N(0, init_std); residual projections / sqrt(2 * n_layer)
  float ln_eps = 1e-5f;
  // Tokens per LM-head/cross-entropy chunk (train.loss_chunk): the [tokens x vocab] logits
  // exist only loss_chunk rows at a time. 0: all tokens in one piece.
  int loss_chunk = 0;
  // The compute precision (runtime.precision): the dtype of the parameters' compute copy, the
  // activations and their gradients. Parameter gradients, LayerNorm statistics, the loss and
  // the optimizer's master weights and state are fp32 either way.
  DType dtype = DType::f32;
  // runtime.attention = "fused": attention through Backend::attention_forward/backward, which
  // keep one fp32 log-sum-exp per query row and head instead of the [H,T,T] probabilities.
  // false: the unfused reference (batched GEMMs and causal_softmax). The default is what
  // runtime.attention = "auto" gives on the cpu (fused).
  bool fused_attention = true;
  // Bytes the backend holds under the workspace tag from a stage's first bf16 x bf16 product
  // on: the cpu backend's oneDNN scratchpad arena (cpu::OnednnGemm::kArenaBytes) when the
  // precision is bf16, else 0. The cost model adds it to each stage that runs a product.
  int64_t gemm_arena_bytes = 0;

  int head_dim() const { return d_model / n_head; }
};

}  // namespace nupipe::runtime
