// mlp.cpp: MLP forward/backward.
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
  Backend& be = x.backend();
  Tensor d_act = Tensor::empty(be, s.act.shape(), x.dtype(), MemTag::workspace);
  proj_.backward(dout, s.act, &d_act);
  be.gelu_backward(d_act.data(), s.fc.data(), d_act.data(), d_act.numel());  // now d_fc
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  fc_.backward(d_act, x, &dx);
  return dx;
}

}  // namespace nupipe::runtime
