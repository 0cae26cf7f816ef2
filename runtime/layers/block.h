// block.h: one pre-LayerNorm transformer block, x + attn(ln1(x)) then + mlp(ln2(.)),
// with its named parameters, cost descriptor and hand-written backward.
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/attention.h"
#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/layers/mlp.h"

namespace nupipe::runtime {

class Block {
 public:
  static std::string prefix(int index) { return "blocks." + std::to_string(index); }
  static void add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg, int index);
  static LayerCost cost(const ModelConfig& cfg);
  Block(const ParamStore& store, const ModelConfig& cfg, int index);

  struct Saved {
    bool recompute = false;  // only x is kept; backward runs the forward again first
    Tensor x;  // the block's input (owned by the previous layer's output)
    LayerNorm::Saved ln1;
    CausalSelfAttention::Saved attn;
    Tensor x2;  // x + attention branch
    LayerNorm::Saved ln2;
    Mlp::Saved mlp;
  };
  // x [B*T, C] -> block output (activations); `saved` keeps what backward needs. With
  // `recompute`, it keeps only x (activation recompute: the block's other activations exist
  // only while this forward, and backward's recomputation of it, run).
  Tensor forward(const Tensor& x, int64_t B, Saved& saved, bool recompute = false) const;
  // dout -> dx (workspace); accumulates parameter gradients and releases `saved`. A block
  // saved for recompute first repeats its forward from x, which gives the same activations
  // bit for bit, so the gradients are those of the plain path exactly.
  Tensor backward(const Tensor& dout, int64_t B, Saved& saved) const;

  // The backward in two passes (zero-bubble schedules). B: dout -> dx as backward computes
  // it, releasing `saved` likewise, but no parameter gradient: what W reads is kept in `w`.
  // Everything kept that the block made is retagged MemTag::weight_inputs when the fused path
  // would release it (so the workspace peak is backward's); the two tensors it was handed,
  // its input (w.ln1.x) and dout (w.mlp.proj.dy), are kept as they are: the caller retags or
  // copies them. W: the parameter gradients, bitwise those of backward. Bytes kept:
  // cost().weight_bytes.
  struct WeightInputs {
    LayerNorm::WeightInputs ln1, ln2;
    CausalSelfAttention::WeightInputs attn;
    Mlp::WeightInputs mlp;
  };
  Tensor backward_input(const Tensor& dout, int64_t B, Saved& saved, WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;
  // The two tensors backward_input keeps as they are: the block's input and dout.
  static Tensor& kept_input(WeightInputs& w) { return w.ln1.x; }
  static Tensor& kept_dout(WeightInputs& w) { return w.mlp.proj.dy; }

 private:
  LayerNorm ln1_, ln2_;
  CausalSelfAttention attn_;
  Mlp mlp_;
};

}  // namespace nupipe::runtime
