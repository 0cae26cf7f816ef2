// block.cpp: transformer block forward/backward (fused, or input then weight gradients); the
// residual adds are fused into the output projections (onto a copy of the residual stream).
#include "runtime/layers/block.h"

#include <algorithm>

namespace nupipe::runtime {

void Block::add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg, int index) {
  const std::string p = prefix(index);
  LayerNorm::add_specs(specs, p + ".ln1", cfg.d_model);
  CausalSelfAttention::add_specs(specs, p + ".attn", cfg);
  LayerNorm::add_specs(specs, p + ".ln2", cfg.d_model);
  Mlp::add_specs(specs, p + ".mlp", cfg);
}

LayerCost Block::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, es = static_cast<int64_t>(dtype_size(cfg.dtype));
  LayerCost ln;
  ln.params = 2 * C;
  ln.activation_bytes_per_token = es * C + 4 * 2;  // normalised output; mean, rstd in fp32
  ln.flops_per_token = 3.0 * 8.0 * C;           // a few passes over the row
  ln.backward_bytes_per_token = es * C;          // dx
  ln.weight_bytes_per_token = LayerNorm::weight_bytes_per_token(C, es);  // x, dout, mean, rstd
  const LayerCost attn = CausalSelfAttention::cost(cfg), mlp = Mlp::cost(cfg);
  LayerCost c;
  c += ln;
  c += attn;
  c += ln;
  c += mlp;
  c.activation_bytes_per_token += es * (C + C);  // x2 and the block output
  c.recompute_bytes_per_token = es * C;          // only the input is kept under recompute
  // Backward in order: mlp's buffers; ln2's dx (dx2) while mlp's dx is held; attention's
  // buffers while dx2 is held; ln1's dx while dx2 and attention's dx are held.
  c.backward_bytes_per_token = std::max({mlp.backward_bytes_per_token, es * C + es * C,
                                         es * C + attn.backward_bytes_per_token, 3 * es * C});
  c.backward_fixed_bytes = attn.backward_fixed_bytes;
  // W: the sum of the sublayers' (no tensor is in two of them: ln1 keeps x and attention's dx;
  // attention ln1's out, dqkv, att and dx2; ln2 x2 and the mlp's dx; the mlp ln2's out, d_fc,
  // act and dout), as `+=` adds them.
  return c;
}

Block::Block(const ParamStore& store, const ModelConfig& cfg, int index)
    : ln1_(store, prefix(index) + ".ln1", cfg.ln_eps),
      ln2_(store, prefix(index) + ".ln2", cfg.ln_eps),
      attn_(store, prefix(index) + ".attn", cfg),
      mlp_(store, prefix(index) + ".mlp") {}

Tensor Block::forward(const Tensor& x, int64_t B, Saved& s, bool recompute) const {
  Backend& be = x.backend();
  s = {};
  s.x = x;
  s.ln1 = ln1_.forward(x);
  s.x2 = Tensor::empty(be, x.shape(), x.dtype(), MemTag::activations);
  be.copy(s.x2.data().ptr, x.data().ptr, x.bytes());
  attn_.forward(s.ln1.out, B, s.x2, s.attn);
  s.ln2 = ln2_.forward(s.x2);
  Tensor out = Tensor::empty(be, x.shape(), x.dtype(), MemTag::activations);
  be.copy(out.data().ptr, s.x2.data().ptr, x.bytes());
  mlp_.forward(s.ln2.out, out, s.mlp);
  if (recompute) {  // keep the input only
    s = {};
    s.x = x;
    s.recompute = true;
  }
  return out;
}

Tensor Block::backward(const Tensor& dout, int64_t B, Saved& s) const {
  Backend& be = dout.backend();
  if (s.recompute) {
    const Tensor x = s.x;
    forward(x, B, s);  // the output is not needed again: it is released at once
  }
  // d(x2) = dout + ln2'(mlp'(dout))
  Tensor dx2 = ln2_.backward(mlp_.backward(dout, s.ln2.out, s.mlp), s.x2, s.ln2);
  be.accumulate(dx2.data(), dout.data(), dout.numel());
  s.mlp = {};
  s.ln2 = {};
  // dx = dx2 + ln1'(attn'(dx2))
  Tensor dx = ln1_.backward(attn_.backward(dx2, s.ln1.out, B, s.attn), s.x, s.ln1);
  be.accumulate(dx.data(), dx2.data(), dx2.numel());
  s = {};
  return dx;
}

Tensor Block::backward_input(const Tensor& dout, int64_t B, Saved& s, WeightInputs& w) const {
  Backend& be = dout.backend();
  if (s.recompute) {
    const Tensor x = s.x;
    forward(x, B, s);
  }
  Tensor dx2;
  {
    Tensor dmlp = mlp_.backward_input(dout, s.ln2.out, s.mlp, w.mlp);
    dx2 = ln2_.backward_input(dmlp, s.x2, s.ln2, w.ln2);
    dmlp.retag(MemTag::weight_inputs);  // where backward releases it
  }
  be.accumulate(dx2.data(), dout.data(), dout.numel());
  s.ln2.out.retag(MemTag::weight_inputs);  // fc's input
  s.x2.retag(MemTag::weight_inputs);       // ln2's input
  s.mlp = {};
  s.ln2 = {};
  Tensor dx;
  {
    Tensor dattn = attn_.backward_input(dx2, s.ln1.out, B, s.attn, w.attn);
    dx = ln1_.backward_input(dattn, s.x, s.ln1, w.ln1);
    dattn.retag(MemTag::weight_inputs);
  }
  be.accumulate(dx.data(), dx2.data(), dx2.numel());
  s.ln1.out.retag(MemTag::weight_inputs);  // qkv's input
  dx2.retag(MemTag::weight_inputs);        // proj's output gradient
  s = {};
  return dx;
}

void Block::backward_weight(const WeightInputs& w) const {
  mlp_.backward_weight(w.mlp);
  ln2_.backward_weight(w.ln2);
  attn_.backward_weight(w.attn);
  ln1_.backward_weight(w.ln1);
}

}  // namespace nupipe::runtime
