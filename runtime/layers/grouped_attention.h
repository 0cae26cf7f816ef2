// grouped_attention.h: llama's causal self-attention: one bias-free q, k, v projection, rotary
// embeddings on q and k, grouped-query attention (n_kv_head key/value heads, each read in
// place by n_head / n_kv_head query heads), a bias-free output projection; hand-written backward.
// With model.lfa (Yuan 2.0), q and k are projected from the localized filter's output and v from
// the input itself.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/layers/localized_filter.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

class GroupedQueryAttention {
 public:
  // qkv.weight [(H + 2 Hkv) D, C]: rows of the H query heads, then the Hkv key heads, then the
  // Hkv value heads (Hugging Face's q_proj, k_proj, v_proj stacked); proj.weight [C, C].
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                        const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  GroupedQueryAttention(const ParamStore& store, const std::string& prefix,
                        const ModelConfig& cfg);

  struct Saved {
    Tensor qkv, probs, att, lse;
    LocalizedFilter::Saved lfa;  // model.lfa only
  };
  // out += proj(attention(rope(qkv(x)))); x is [B*T, C]. Keeps the rotated qkv, att and,
  // unfused, probs [B,H,T,T] or, fused, lse [B,H,T] (fp32).
  void forward(const Tensor& x, int64_t B, Tensor& out, Saved& saved) const;
  Tensor backward(const Tensor& dout, const Tensor& x, int64_t B, const Saved& saved) const;

  // The backward in two passes, as CausalSelfAttention's: B keeps the projections' inputs and
  // output gradients (x and dout the caller's; att and d(qkv) before the rotation retagged
  // MemTag::weight_inputs); W accumulates the weight gradients, bitwise those of backward.
  // With model.lfa, qkv.x is the filter's output f (q and k's input) and v_x the input (v's).
  struct WeightInputs {
    Linear::WeightInputs qkv, proj;
    Tensor v_x;
    LocalizedFilter::WeightInputs lfa;
  };
  Tensor backward_input(const Tensor& dout, const Tensor& x, int64_t B, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;

 private:
  Tensor backward_impl(const Tensor& dout, const Tensor& x, int64_t B, const Saved& s,
                       WeightInputs* w) const;
  // d(x) from dqkv with model.lfa: v's part, then q and k's through the filter.
  Tensor filtered_input_gradient(const Tensor& x, const Tensor& dqkv, const Saved& s,
                                 WeightInputs* w) const;
  // qkv's weight gradient with model.lfa: v's rows from x, q and k's from the filtered f.
  void filtered_weight_gradients(const Tensor& dqkv, const Tensor& f, const Tensor& x) const;
  Linear qkv_, proj_;
  std::optional<LocalizedFilter> lfa_;
  int64_t T_, H_, Hkv_, D_, C_;
  float theta_;
  bool fused_;
};

}  // namespace nupipe::runtime
