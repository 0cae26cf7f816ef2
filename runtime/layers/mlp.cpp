// mlp.cpp: MLP forward and backward, fused or in two passes (input gradient, then the
// weight gradients).
#include "runtime/layers/mlp.h"

#include <cmath>

namespace nupipe::runtime {

void Mlp::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                    const ModelConfig& cfg) {
  const float resid_std = cfg.init_std / std::sqrt(2.0f * cfg.n_layer);
  Linear::add_specs(specs, prefix + ".fc", cfg.d_model, 4 * cfg.d_model, cfg.init_std);
  Linear::add_specs(specs, prefix + ".proj", 4 * cfg.d_model, cfg.d_model, resid_std);
}

LayerCost Mlp::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, es = static_cast<int64_t>(dtype_size(cfg.dtype));
  LayerCost c;
  c.params = 4 * C * C + 4 * C + 4 * C * C + C;
  c.activation_bytes_per_token = es * (4 * C + 4 * C);  // fc and act
  c.backward_bytes_per_token = es * (4 * C + C);        // d_act (reused as d_fc) and dx
  c.flops_per_token = 3.0 * 2.0 * 8.0 * C * C;
  c.weight_bytes_per_token = es * ((C + 4 * C) + (4 * C + C));  // fc's x, d_fc; act, dout
  return c;
}

Mlp::Mlp(const ParamStore& store, const std::string& prefix)
    : fc_(store, prefix + ".fc"), proj_(store, prefix + ".proj") {}

void Mlp::forward(const Tensor& x, Tensor& out, Saved& s) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / fc_.in();
  s.fc = Tensor::empty(be, {N, fc_.out()}, x.dtype(), MemTag::activations);
  s.act = Tensor::empty(be, {N, fc_.out()}, x.dtype(), MemTag::activations);
  fc_.forward_gelu(x, s.fc, s.act);
  proj_.forward(s.act, out, 1.0f);
}

Tensor Mlp::backward(const Tensor& dout, const Tensor& x, const Saved& s) const {
  return backward_impl(dout, x, s, nullptr);
}

Tensor Mlp::backward_input(const Tensor& dout, const Tensor& x, const Saved& s,
                           WeightInputs& w) const {
  return backward_impl(dout, x, s, &w);
}

void Mlp::backward_weight(const WeightInputs& w) const {
  proj_.backward_weight(w.proj);
  fc_.backward_weight(w.fc);
}

// Fused (w null): each Linear's weight gradient where it is due. Split: none, and what they
// read is kept; the buffers live and die as in the fused path (so workspace peaks are equal).
Tensor Mlp::backward_impl(const Tensor& dout, const Tensor& x, const Saved& s,
                          WeightInputs* w) const {
  Backend& be = x.backend();
  Tensor d_act = Tensor::empty(be, s.act.shape(), x.dtype(), MemTag::workspace);
  if (!w) proj_.backward_weight(dout, s.act);
  proj_.backward_input(dout, d_act);
  be.gelu_backward(d_act.data(), s.fc.data(), d_act.data(), d_act.numel());  // now d_fc
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  if (!w) fc_.backward_weight(d_act, x);
  fc_.backward_input(d_act, dx);
  if (w) {
    w->proj = {s.act, dout};
    w->fc = {x, d_act};
    s.act.retag(MemTag::weight_inputs);
    d_act.retag(MemTag::weight_inputs);
  }
  return dx;
}

}  // namespace nupipe::runtime
