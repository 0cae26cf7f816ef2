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

  // The backward in two passes. B returns dx (workspace) and keeps in `w` what W reads: the
  // projections' inputs and output gradients; x and dout are the caller's (kept, not
  // retagged), att and dqkv are retagged MemTag::weight_inputs. W accumulates the parameter
  // gradients, bitwise those of backward.
  struct WeightInputs {
    Linear::WeightInputs qkv, proj;
  };
  Tensor backward_input(const Tensor& dout, const Tensor& x, int64_t B, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;

 private:
  Tensor backward_impl(const Tensor& dout, const Tensor& x, int64_t B, const Saved& s,
                       WeightInputs* w) const;
  Linear qkv_, proj_;
  int64_t T_, H_, D_, C_;
  bool fused_;
};

}  // namespace nupipe::runtime
