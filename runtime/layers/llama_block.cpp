// llama_block.cpp: llama block forward/backward (fused, or input then weight gradients); the
// residual adds are fused into the output projections (onto a copy of the residual stream).
#include "runtime/layers/llama_block.h"

#include <algorithm>

namespace nupipe::runtime {

void LlamaBlock::add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg, int index) {
  const std::string p = prefix(index);
  RmsNorm::add_specs(specs, p + ".norm1", cfg.d_model);
  GroupedQueryAttention::add_specs(specs, p + ".attn", cfg);
  RmsNorm::add_specs(specs, p + ".norm2", cfg.d_model);
  SwiGluMlp::add_specs(specs, p + ".mlp", cfg);
}

LayerCost LlamaBlock::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, es = static_cast<int64_t>(dtype_size(cfg.dtype));
  LayerCost norm;
  norm.params = C;
  norm.activation_bytes_per_token = es * C + 4;  // normalised output; rstd in fp32
  norm.flops_per_token = 3.0 * 4.0 * C;
  norm.backward_bytes_per_token = es * C;  // dx
  norm.weight_bytes_per_token = RmsNorm::weight_bytes_per_token(C, es);  // x, dout, rstd
  const LayerCost attn = GroupedQueryAttention::cost(cfg), mlp = SwiGluMlp::cost(cfg);
  LayerCost c;
  c += norm;
  c += attn;
  c += norm;
  c += mlp;
  c.activation_bytes_per_token += es * (C + C);  // x2 and the block output
  c.recompute_bytes_per_token = es * C;          // only the input is kept under recompute
  // Backward in order (as Block's): the mlp's buffers; norm2's dx (dx2) while the mlp's dx is
  // held; attention's buffers while dx2 is held; norm1's dx while dx2 and attention's dx are.
  // Attention's phase has a per-sequence part (unfused: one sequence's score gradient) that
  // the others lack, and the wide MLP's may be larger per token: two phases, the larger wins.
  c.backward_bytes_per_token = es * C + attn.backward_bytes_per_token;
  c.backward_fixed_bytes = attn.backward_fixed_bytes;
  c.backward2_bytes_per_token = std::max({mlp.backward_bytes_per_token, es * C + es * C,
                                          3 * es * C});
  c.backward2_fixed_bytes = 0;
  return c;  // W: the sublayers' sum, as `+=` adds them (no tensor is in two of them)
}

LlamaBlock::LlamaBlock(const ParamStore& store, const ModelConfig& cfg, int index)
    : norm1_(store, prefix(index) + ".norm1", cfg.norm_eps),
      norm2_(store, prefix(index) + ".norm2", cfg.norm_eps),
      attn_(store, prefix(index) + ".attn", cfg),
      mlp_(store, prefix(index) + ".mlp") {}

Tensor LlamaBlock::forward(const Tensor& x, int64_t B, Saved& s, bool recompute) const {
  Backend& be = x.backend();
  s = {};
  s.x = x;
  s.norm1 = norm1_.forward(x);
  s.x2 = Tensor::empty(be, x.shape(), x.dtype(), MemTag::activations);
  be.copy(s.x2.data().ptr, x.data().ptr, x.bytes());
  attn_.forward(s.norm1.out, B, s.x2, s.attn);
  s.norm2 = norm2_.forward(s.x2);
  Tensor out = Tensor::empty(be, x.shape(), x.dtype(), MemTag::activations);
  be.copy(out.data().ptr, s.x2.data().ptr, x.bytes());
  mlp_.forward(s.norm2.out, out, s.mlp);
  if (recompute) {  // keep the input only
    s = {};
    s.x = x;
    s.recompute = true;
  }
  return out;
}

Tensor LlamaBlock::backward(const Tensor& dout, int64_t B, Saved& s) const {
  Backend& be = dout.backend();
  if (s.recompute) {
    const Tensor x = s.x;
    forward(x, B, s);
  }
  Tensor dx2 = norm2_.backward(mlp_.backward(dout, s.norm2.out, s.mlp), s.x2, s.norm2);
  be.accumulate(dx2.data(), dout.data(), dout.numel());
  s.mlp = {};
  s.norm2 = {};
  Tensor dx = norm1_.backward(attn_.backward(dx2, s.norm1.out, B, s.attn), s.x, s.norm1);
  be.accumulate(dx.data(), dx2.data(), dx2.numel());
  s = {};
  return dx;
}

Tensor LlamaBlock::backward_input(const Tensor& dout, int64_t B, Saved& s,
                                  WeightInputs& w) const {
  Backend& be = dout.backend();
  if (s.recompute) {
    const Tensor x = s.x;
    forward(x, B, s);
  }
  Tensor dx2;
  {
    Tensor dmlp = mlp_.backward_input(dout, s.norm2.out, s.mlp, w.mlp);
    dx2 = norm2_.backward_input(dmlp, s.x2, s.norm2, w.norm2);
    dmlp.retag(MemTag::weight_inputs);  // where backward releases it
  }
  be.accumulate(dx2.data(), dout.data(), dout.numel());
  s.norm2.out.retag(MemTag::weight_inputs);  // gate_up's input
  s.x2.retag(MemTag::weight_inputs);         // norm2's input
  s.mlp = {};
  s.norm2 = {};
  Tensor dx;
  {
    Tensor dattn = attn_.backward_input(dx2, s.norm1.out, B, s.attn, w.attn);
    dx = norm1_.backward_input(dattn, s.x, s.norm1, w.norm1);
    dattn.retag(MemTag::weight_inputs);
  }
  be.accumulate(dx.data(), dx2.data(), dx2.numel());
  s.norm1.out.retag(MemTag::weight_inputs);  // qkv's input
  dx2.retag(MemTag::weight_inputs);          // proj's output gradient
  s = {};
  return dx;
}

void LlamaBlock::backward_weight(const WeightInputs& w) const {
  mlp_.backward_weight(w.mlp);
  norm2_.backward_weight(w.norm2);
  attn_.backward_weight(w.attn);
  norm1_.backward_weight(w.norm1);
}

}  // namespace nupipe::runtime
