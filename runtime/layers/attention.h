// attention.h: causal multi-head self-attention (qkv projection, softmax(q k^T / sqrt(D)) v
// per head, output projection) with a hand-written backward. Heads are strided views of qkv.
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

class CausalSelfAttention {
 public:
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                        const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  CausalSelfAttention(const ParamStore& store, const std::string& prefix, const ModelConfig& cfg);

  struct Saved { Tensor qkv, probs, att, lse; };
  // out += proj(attention(x)); x is [B*T, C]. Keeps qkv, att and, unfused, probs [B,H,T,T]
  // or, fused, lse [B,H,T] (fp32) for backward.
  void forward(const Tensor& x, int64_t B, Tensor& out, Saved& saved) const;
  // Returns dx (workspace) given dout; accumulates parameter gradients.
  Tensor backward(const Tensor& dout, const Tensor& x, int64_t B, const Saved& saved) const;

 private:
  Linear qkv_, proj_;
  int64_t T_, H_, D_, C_;
  bool fused_;
};

}  // namespace nupipe::runtime
