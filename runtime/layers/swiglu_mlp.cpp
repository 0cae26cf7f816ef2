// swiglu_mlp.cpp: SwiGLU MLP forward and backward, fused or in two passes (input gradient,
// then the weight gradients).
#include "runtime/layers/swiglu_mlp.h"

#include <algorithm>
#include <cmath>

namespace nupipe::runtime {

void SwiGluMlp::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                          const ModelConfig& cfg) {
  const float resid_std = cfg.init_std / std::sqrt(2.0f * cfg.n_layer);
  const int64_t F = cfg.ffn_width();
  Linear::add_specs(specs, prefix + ".gate_up", cfg.d_model, 2 * F, cfg.init_std, false);
  Linear::add_specs(specs, prefix + ".down", F, cfg.d_model, resid_std, false);
}

LayerCost SwiGluMlp::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, F = cfg.ffn_width();
  const int64_t es = static_cast<int64_t>(dtype_size(cfg.dtype));
  LayerCost c;
  c.params = 2 * F * C + C * F;
  c.activation_bytes_per_token = es * (2 * F + F);  // gate_up and h
  // d_h [F] and d(gate_up) [2F], then d_h released before dx [C]
  c.backward_bytes_per_token = std::max(es * (F + 2 * F), es * (2 * F + C));
  c.flops_per_token = 3.0 * 2.0 * 3.0 * F * C + 3.0 * 4.0 * F;
  c.weight_bytes_per_token = es * ((C + 2 * F) + (F + C));  // x, d(gate_up); h, dout
  return c;
}

SwiGluMlp::SwiGluMlp(const ParamStore& store, const std::string& prefix)
    : gate_up_(store, prefix + ".gate_up"), down_(store, prefix + ".down") {}

void SwiGluMlp::forward(const Tensor& x, Tensor& out, Saved& s) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / gate_up_.in(), F = down_.in();
  s.gate_up = Tensor::empty(be, {N, 2 * F}, x.dtype(), MemTag::activations);
  s.h = Tensor::empty(be, {N, F}, x.dtype(), MemTag::activations);
  gate_up_.forward(x, s.gate_up);
  be.swiglu_forward(s.h.data(), s.gate_up.data(), N, F);
  down_.forward(s.h, out, 1.0f);
}

Tensor SwiGluMlp::backward(const Tensor& dout, const Tensor& x, const Saved& s) const {
  return backward_impl(dout, x, s, nullptr);
}

Tensor SwiGluMlp::backward_input(const Tensor& dout, const Tensor& x, const Saved& s,
                                 WeightInputs& w) const {
  return backward_impl(dout, x, s, &w);
}

void SwiGluMlp::backward_weight(const WeightInputs& w) const {
  down_.backward_weight(w.down);
  gate_up_.backward_weight(w.gate_up);
}

Tensor SwiGluMlp::backward_impl(const Tensor& dout, const Tensor& x, const Saved& s,
                                WeightInputs* w) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / gate_up_.in(), F = down_.in();
  Tensor dgu = Tensor::empty(be, {N, 2 * F}, x.dtype(), MemTag::workspace);
  {
    Tensor dh = Tensor::empty(be, {N, F}, x.dtype(), MemTag::workspace);
    if (!w) down_.backward_weight(dout, s.h);
    down_.backward_input(dout, dh);
    be.swiglu_backward(dgu.data(), s.gate_up.data(), dh.data(), N, F);
  }  // d_h released
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  if (!w) gate_up_.backward_weight(dgu, x);
  gate_up_.backward_input(dgu, dx);
  if (w) {
    w->down = {s.h, dout};
    w->gate_up = {x, dgu};
    s.h.retag(MemTag::weight_inputs);
    dgu.retag(MemTag::weight_inputs);
  }
  return dx;
}

}  // namespace nupipe::runtime
