// linear.cpp: Linear and LayerNorm forward/backward through the Backend, fused or in two
// passes (input gradient, weight gradient).
#include "runtime/layers/linear.h"

#include "runtime/check.h"

namespace nupipe::runtime {

void Linear::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t in,
                       int64_t out, float init_std, bool bias) {
  specs.push_back({prefix + ".weight", {out, in}, Init::normal, init_std, true});
  if (bias) specs.push_back({prefix + ".bias", {out}, Init::zeros, 0.0f, false});
}

Linear::Linear(const ParamStore& store, const std::string& prefix)
    : w_(store.param(prefix + ".weight")),
      b_(store.has(prefix + ".bias") ? store.param(prefix + ".bias") : Tensor{}),
      dw_(store.grad(prefix + ".weight")),
      db_(store.has(prefix + ".bias") ? store.grad(prefix + ".bias") : Tensor{}),
      in_(w_.dim(1)),
      out_(w_.dim(0)) {}

void Linear::forward(const Tensor& x, Tensor& y, float beta) const {
  Backend& be = w_.backend();
  const int64_t N = x.numel() / in_;
  NUPIPE_CHECK(y.numel() == N * out_, "Linear output size mismatch");
  if (!b_.defined()) {  // no bias: the product alone
    be.gemm(false, true, N, out_, in_, 1.0f, x.data(), in_, w_.data(), in_, beta, y.data(), out_);
    return;
  }
  be.linear_forward(y.data(), x.data(), w_.data(), b_.data(), N, in_, out_, beta, DevPtr{});
}

void Linear::forward_gelu(const Tensor& x, Tensor& y, Tensor& act) const {
  Backend& be = w_.backend();
  const int64_t N = x.numel() / in_;
  NUPIPE_CHECK(y.numel() == N * out_ && act.numel() == y.numel(), "Linear output size mismatch");
  be.linear_forward(y.data(), x.data(), w_.data(), b_.data(), N, in_, out_, 0.0f, act.data());
}

void Linear::backward(const Tensor& dy, const Tensor& x, Tensor* dx, bool accumulate) const {
  backward_weight(dy, x);
  if (dx) backward_input(dy, *dx, accumulate);
}

void Linear::backward_input(const Tensor& dy, Tensor& dx, bool accumulate) const {
  const int64_t N = dy.numel() / out_;
  NUPIPE_CHECK(dx.numel() == N * in_, "Linear input gradient size mismatch");
  w_.backend().gemm(false, false, N, in_, out_, 1.0f, dy.data(), out_, w_.data(), in_,
                    accumulate ? 1.0f : 0.0f, dx.data(), in_);
}

void Linear::backward_weight(const Tensor& dy, const Tensor& x) const {
  Backend& be = w_.backend();
  const int64_t N = x.numel() / in_;
  NUPIPE_CHECK(dy.numel() == N * out_, "Linear output gradient size mismatch");
  be.gemm(true, false, out_, in_, N, 1.0f, dy.data(), out_, x.data(), in_, 1.0f, dw_.data(), in_);
  if (b_.defined()) be.bias_backward(db_.f32(), dy.data(), N, out_);
}

void Linear::forward_rows(const Tensor& x, int64_t row0, int64_t rows, DevPtr y,
                          int64_t ldy) const {
  NUPIPE_CHECK(!b_.defined() && row0 >= 0 && row0 + rows <= out_, "Linear rows out of range");
  const int64_t N = x.numel() / in_;
  w_.backend().gemm(false, true, N, rows, in_, 1.0f, x.data(), in_, w_.data() + row0 * in_, in_,
                    0.0f, y, ldy);
}

void Linear::backward_input_rows(ConstDevPtr dy, int64_t ldy, int64_t row0, int64_t rows,
                                 Tensor& dx, bool accumulate) const {
  NUPIPE_CHECK(!b_.defined() && row0 >= 0 && row0 + rows <= out_, "Linear rows out of range");
  const int64_t N = dx.numel() / in_;
  w_.backend().gemm(false, false, N, in_, rows, 1.0f, dy, ldy, w_.data() + row0 * in_, in_,
                    accumulate ? 1.0f : 0.0f, dx.data(), in_);
}

void Linear::backward_weight_rows(ConstDevPtr dy, int64_t ldy, int64_t row0, int64_t rows,
                                  const Tensor& x) const {
  NUPIPE_CHECK(!b_.defined() && row0 >= 0 && row0 + rows <= out_, "Linear rows out of range");
  const int64_t N = x.numel() / in_;
  w_.backend().gemm(true, false, rows, in_, N, 1.0f, dy, ldy, x.data(), in_, 1.0f,
                    dw_.data() + row0 * in_, in_);
}

void LayerNorm::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t C) {
  specs.push_back({prefix + ".weight", {C}, Init::ones, 0.0f, false});
  specs.push_back({prefix + ".bias", {C}, Init::zeros, 0.0f, false});
}

LayerNorm::LayerNorm(const ParamStore& store, const std::string& prefix, float eps)
    : w_(store.param(prefix + ".weight")),
      b_(store.param(prefix + ".bias")),
      dw_(store.grad(prefix + ".weight")),
      db_(store.grad(prefix + ".bias")),
      eps_(eps) {}

LayerNorm::Saved LayerNorm::forward(const Tensor& x, MemTag tag) const {
  Backend& be = w_.backend();
  const int64_t C = w_.numel(), N = x.numel() / C;
  Saved s{Tensor::empty(be, x.shape(), x.dtype(), tag), Tensor::empty(be, {N}, DType::f32, tag),
          Tensor::empty(be, {N}, DType::f32, tag)};  // statistics in fp32
  be.layernorm_forward(s.out.data(), s.mean.f32(), s.rstd.f32(), x.data(), w_.data(), b_.data(), N,
                       C, eps_);
  return s;
}

Tensor LayerNorm::backward(const Tensor& dout, const Tensor& x, const Saved& saved) const {
  Backend& be = w_.backend();
  const int64_t C = w_.numel(), N = x.numel() / C;
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  be.layernorm_backward(dx.data(), dw_.f32(), db_.f32(), dout.data(), x.data(), w_.data(),
                        saved.mean.f32(), saved.rstd.f32(), N, C);
  return dx;
}

Tensor LayerNorm::backward_input(const Tensor& dout, const Tensor& x, const Saved& saved) const {
  Backend& be = w_.backend();
  const int64_t C = w_.numel(), N = x.numel() / C;
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  be.layernorm_backward_input(dx.data(), dout.data(), x.data(), w_.data(), saved.mean.f32(),
                              saved.rstd.f32(), N, C);
  return dx;
}

Tensor LayerNorm::backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                                 WeightInputs& w) const {
  Tensor dx = backward_input(dout, x, saved);
  w = {x, dout, saved.mean, saved.rstd};
  w.mean.retag(MemTag::weight_inputs);
  w.rstd.retag(MemTag::weight_inputs);
  return dx;
}

void LayerNorm::backward_weight(const WeightInputs& w) const {
  const int64_t C = w_.numel(), N = w.x.numel() / C;
  w_.backend().layernorm_backward_weight(dw_.f32(), db_.f32(), w.dout.data(), w.x.data(),
                                         w.mean.f32(), w.rstd.f32(), N, C);
}

}  // namespace nupipe::runtime
