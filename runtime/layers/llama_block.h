// llama_block.h: one llama decoder block, x + attn(norm1(x)) then + mlp(norm2(.)) with RMSNorm,
// grouped-query attention with rotary embeddings and a SwiGLU MLP; named parameters, cost
// descriptor and hand-written backward (fused, or input then weight gradients), as Block's.
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/grouped_attention.h"
#include "runtime/layers/layer_cost.h"
#include "runtime/layers/rms_norm.h"
#include "runtime/layers/swiglu_mlp.h"

namespace nupipe::runtime {

class LlamaBlock {
 public:
  static std::string prefix(int index) { return "blocks." + std::to_string(index); }
  static void add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg, int index);
  static LayerCost cost(const ModelConfig& cfg);
  LlamaBlock(const ParamStore& store, const ModelConfig& cfg, int index);

  struct Saved {
    bool recompute = false;  // only x is kept; backward runs the forward again first
    Tensor x;
    RmsNorm::Saved norm1;
    GroupedQueryAttention::Saved attn;
    Tensor x2;  // x + attention branch
    RmsNorm::Saved norm2;
    SwiGluMlp::Saved mlp;
  };
  // As Block::forward / backward.
  Tensor forward(const Tensor& x, int64_t B, Saved& saved, bool recompute = false) const;
  Tensor backward(const Tensor& dout, int64_t B, Saved& saved) const;

  // As Block::backward_input / backward_weight: the two tensors B was handed, the block's
  // input and dout, are kept in `w` as they are (kept_input, kept_dout) for the caller to
  // retag or copy; everything else kept is retagged MemTag::weight_inputs.
  struct WeightInputs {
    RmsNorm::WeightInputs norm1, norm2;
    GroupedQueryAttention::WeightInputs attn;
    SwiGluMlp::WeightInputs mlp;
  };
  Tensor backward_input(const Tensor& dout, int64_t B, Saved& saved, WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;
  static Tensor& kept_input(WeightInputs& w) { return w.norm1.x; }
  static Tensor& kept_dout(WeightInputs& w) { return w.mlp.down.dy; }

 private:
  RmsNorm norm1_, norm2_;
  GroupedQueryAttention attn_;
  SwiGluMlp mlp_;
};

}  // namespace nupipe::runtime
