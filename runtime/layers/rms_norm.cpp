// rms_norm.cpp: RMSNorm forward and backward through the Backend (Backend::rmsnorm_*), fused
// or in two passes.
#include "runtime/layers/rms_norm.h"

namespace nupipe::runtime {

void RmsNorm::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t C) {
  specs.push_back({prefix + ".weight", {C}, Init::ones, 0.0f, false});
}

RmsNorm::RmsNorm(const ParamStore& store, const std::string& prefix, float eps)
    : w_(store.param(prefix + ".weight")), dw_(store.grad(prefix + ".weight")), eps_(eps) {}

RmsNorm::Saved RmsNorm::forward(const Tensor& x, MemTag tag) const {
  Backend& be = w_.backend();
  const int64_t C = w_.numel(), N = x.numel() / C;
  Saved s{Tensor::empty(be, x.shape(), x.dtype(), tag), Tensor::empty(be, {N}, DType::f32, tag)};
  be.rmsnorm_forward(s.out.data(), s.rstd.f32(), x.data(), w_.data(), N, C, eps_);
  return s;
}

Tensor RmsNorm::input_gradient(const Tensor& dout, const Tensor& x, const Saved& saved) const {
  Backend& be = w_.backend();
  const int64_t C = w_.numel(), N = x.numel() / C;
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  be.rmsnorm_backward_input(dx.data(), dout.data(), x.data(), w_.data(), saved.rstd.f32(), N, C);
  return dx;
}

Tensor RmsNorm::backward(const Tensor& dout, const Tensor& x, const Saved& saved) const {
  backward_weight({x, dout, saved.rstd});
  return input_gradient(dout, x, saved);
}

Tensor RmsNorm::backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                               WeightInputs& w) const {
  Tensor dx = input_gradient(dout, x, saved);
  w = {x, dout, saved.rstd};
  w.rstd.retag(MemTag::weight_inputs);
  return dx;
}

void RmsNorm::backward_weight(const WeightInputs& w) const {
  const int64_t C = w_.numel(), N = w.x.numel() / C;
  w_.backend().rmsnorm_backward_weight(dw_.f32(), w.dout.data(), w.x.data(), w.rstd.f32(), N, C);
}

}  // namespace nupipe::runtime
