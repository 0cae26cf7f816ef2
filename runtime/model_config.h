// model_config.h: the model's family, shape and initialisation options ([model] in the
// config). Validated by launcher/config; the model trusts it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace nupipe::runtime {

struct ModelConfig {
  // "gpt2": LayerNorm, learned positions, GELU MLP, biases. "llama": RMSNorm, rotary
  // positions, SwiGLU MLP, grouped-query attention, no biases (docs/llama.md).
  std::string family = "gpt2";
  int n_layer = 4;
  int d_model = 64;
  int n_head = 4;
  int vocab_size = 256;
  int seq_len = 64;
  bool tie_embeddings = true;  // LM head shares the token embedding matrix
  float init_std = 0.02f;      // N(0, init_std); residual projections / sqrt(2 * n_layer)
  float ln_eps = 1e-5f;  // gpt2: LayerNorm's epsilon
  // llama only (refused for gpt2 by launcher/config):
  int n_kv_head = 0;          // key/value heads, each shared by n_head / n_kv_head query heads; 0: n_head
  int ffn_hidden = 0;         // SwiGLU width; 0: 8 * d_model / 3 rounded up to a multiple of 256
  float rope_theta = 10000.0f;  // rotary embedding base
  float norm_eps = 1e-5f;       // RMSNorm's epsilon
  // Yuan 2.0's localized filtering (runtime/layers/localized_filter.h): q and k are projected
  // from RMSNorm(conv2(conv1(h)) + h), v from h, h the block's normalised input. Multi-head.
  bool lfa = false;
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

  bool llama() const { return family == "llama"; }
  int head_dim() const { return d_model / n_head; }
  // The key/value heads and the MLP's hidden width that run (gpt2: n_head and 4 * d_model).
  int kv_heads() const { return llama() && n_kv_head > 0 ? n_kv_head : n_head; }
  int ffn_width() const {
    if (!llama()) return 4 * d_model;
    if (ffn_hidden > 0) return ffn_hidden;
    const int64_t h = 8 * int64_t{d_model} / 3;
    return static_cast<int>((h + 255) / 256 * 256);
  }
  // Columns of the fused q, k, v projection's output: q [n_head * D], k and v [kv_heads * D].
  int qkv_width() const { return (n_head + 2 * kv_heads()) * head_dim(); }
};

// The model keys a checkpoint records and must match to load (its tensors' shapes follow from
// them): one list, read by the checkpoint writer, reader, comparison and `nupipe ckpt inspect`.
struct ModelKey {
  enum class Kind { integer, boolean, text };  // stored as an integer (booleans 0/1) or text
  const char* name;    // "model.n_layer"
  Kind kind;
  // The value of a checkpoint written before the key existed; nullptr: the key is required.
  const char* absent;
  std::string (*get)(const ModelConfig&);  // "12", "true", "llama"
  void (*set)(ModelConfig&, const std::string&);
};
const std::vector<ModelKey>& model_keys();

}  // namespace nupipe::runtime
