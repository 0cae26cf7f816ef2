// localized_filter.cpp: the causal width-2 convolution as GEMMs (the current tap over all rows,
// the previous tap over rows 1..T-1 of each sequence as a strided batch, so no shifted copy is
// made) and Yuan's localized filter on top of it.
#include "runtime/layers/localized_filter.h"

#include <initializer_list>

#include "runtime/check.h"

namespace nupipe::runtime {

void CausalConv2::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                            int64_t in, int64_t out, float init_std) {
  specs.push_back({prefix + ".weight", {2, out, in}, Init::normal, init_std, true});
  specs.push_back({prefix + ".bias", {out}, Init::zeros, 0.0f, false});
}

CausalConv2::CausalConv2(const ParamStore& store, const std::string& prefix, int64_t seq_len)
    : w_(store.param(prefix + ".weight")),
      b_(store.param(prefix + ".bias")),
      dw_(store.grad(prefix + ".weight")),
      db_(store.grad(prefix + ".bias")),
      in_(w_.dim(2)),
      out_(w_.dim(1)),
      T_(seq_len) {}

void CausalConv2::forward(const Tensor& x, Tensor& y, float beta) const {
  Backend& be = w_.backend();
  const int64_t N = x.numel() / in_, B = N / T_, tap = out_ * in_;
  NUPIPE_CHECK(N == B * T_ && y.numel() == N * out_, "CausalConv2 shapes do not match");
  be.gemm(false, true, N, out_, in_, 1.0f, x.data(), in_, w_.data() + tap, in_, beta, y.data(),
          out_);
  be.add_bias(y.data(), b_.data(), N, out_);
  if (T_ > 1)  // y[t] += W0 x[t - 1] for t >= 1 of each sequence
    be.gemm_batched(false, true, T_ - 1, out_, in_, 1.0f, x.data(), in_, T_ * in_, w_.data(), in_,
                    0, 1.0f, y.data() + out_, out_, T_ * out_, B);
}

void CausalConv2::backward_input(const Tensor& dy, Tensor& dx, bool accumulate) const {
  Backend& be = w_.backend();
  const int64_t N = dy.numel() / out_, B = N / T_, tap = out_ * in_;
  NUPIPE_CHECK(dx.numel() == N * in_, "CausalConv2 input gradient size mismatch");
  be.gemm(false, false, N, in_, out_, 1.0f, dy.data(), out_, w_.data() + tap, in_,
          accumulate ? 1.0f : 0.0f, dx.data(), in_);
  if (T_ > 1)  // dx[t - 1] += dy[t] W0 for t >= 1 of each sequence
    be.gemm_batched(false, false, T_ - 1, in_, out_, 1.0f, dy.data() + out_, out_, T_ * out_,
                    w_.data(), in_, 0, 1.0f, dx.data(), in_, T_ * in_, B);
}

void CausalConv2::backward_weight(const Tensor& dy, const Tensor& x) const {
  Backend& be = w_.backend();
  const int64_t N = x.numel() / in_, B = N / T_, tap = out_ * in_;
  NUPIPE_CHECK(dy.numel() == N * out_, "CausalConv2 output gradient size mismatch");
  be.gemm(true, false, out_, in_, N, 1.0f, dy.data(), out_, x.data(), in_, 1.0f, dw_.data() + tap,
          in_);
  // W0 += sum over sequences of dy[1..T-1]^T x[0..T-2]: one product per sequence (a batch
  // would need a sum across it; the pairs between sequences are not in the convolution).
  for (int64_t b = 0; b < B && T_ > 1; ++b)
    be.gemm(true, false, out_, in_, T_ - 1, 1.0f, dy.data() + (b * T_ + 1) * out_, out_,
            x.data() + b * T_ * in_, in_, 1.0f, dw_.data(), in_);
  be.bias_backward(db_.f32(), dy.data(), N, out_);
}

void LocalizedFilter::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                                const ModelConfig& cfg) {
  const int64_t C = cfg.d_model;
  CausalConv2::add_specs(specs, prefix + ".conv1", C, C / 2, cfg.init_std);
  CausalConv2::add_specs(specs, prefix + ".conv2", C / 2, C, cfg.init_std);
  RmsNorm::add_specs(specs, prefix + ".norm", C);
}

LayerCost LocalizedFilter::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, h = C / 2;
  LayerCost c;
  c.params = 2 * h * C + h + 2 * C * h + C + C;
  // Each convolution 2 taps x 2 flops per weight forward, the norm about 4 per element and the
  // residual 1; backward twice forward.
  c.flops_per_token = 3.0 * (2.0 * 2.0 * (2.0 * h * C) + 5.0 * C);
  return c;
}

int64_t LocalizedFilter::activation_bytes_per_token(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, es = static_cast<int64_t>(dtype_size(cfg.dtype));
  return es * (C / 2 + C + C) + 4;  // o1, z, f; rstd in fp32
}

int64_t LocalizedFilter::weight_extra_bytes_per_token(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, es = static_cast<int64_t>(dtype_size(cfg.dtype));
  return es * (C + C / 2 + C);  // dz, do1, df
}

LocalizedFilter::LocalizedFilter(const ParamStore& store, const std::string& prefix,
                                 const ModelConfig& cfg)
    : conv1_(store, prefix + ".conv1", cfg.seq_len),
      conv2_(store, prefix + ".conv2", cfg.seq_len),
      norm_(store, prefix + ".norm", kNormEps),
      C_(cfg.d_model) {}

void LocalizedFilter::forward(const Tensor& h, Saved& s) const {
  Backend& be = h.backend();
  const int64_t N = h.numel() / C_;
  s.o1 = Tensor::empty(be, {N, C_ / 2}, h.dtype(), MemTag::activations);
  conv1_.forward(h, s.o1, 0.0f);
  s.z = Tensor::empty(be, h.shape(), h.dtype(), MemTag::activations);
  be.copy(s.z.data().ptr, h.data().ptr, h.bytes());  // the residual, then += conv2(o1)
  conv2_.forward(s.o1, s.z, 1.0f);
  s.norm = norm_.forward(s.z);
}

void LocalizedFilter::backward(const Tensor& df, const Tensor& h, const Saved& s,
                               Tensor& dh) const {
  Backend& be = h.backend();
  const Tensor dz = norm_.backward(df, s.z, s.norm);
  be.accumulate(dh.data(), dz.data(), dz.numel());
  Tensor do1 = Tensor::empty(be, s.o1.shape(), h.dtype(), MemTag::workspace);
  conv2_.backward_weight(dz, s.o1);
  conv2_.backward_input(dz, do1, false);
  conv1_.backward_weight(do1, h);
  conv1_.backward_input(do1, dh, true);
}

void LocalizedFilter::backward_input(const Tensor& df, const Tensor& h, const Saved& s,
                                     Tensor& dh, WeightInputs& w) const {
  Backend& be = h.backend();
  const Tensor dz = norm_.backward_input(df, s.z, s.norm, w.norm);
  be.accumulate(dh.data(), dz.data(), dz.numel());
  Tensor do1 = Tensor::empty(be, s.o1.shape(), h.dtype(), MemTag::workspace);
  conv2_.backward_input(dz, do1, false);
  conv1_.backward_input(do1, dh, true);
  w.o1 = s.o1;
  w.dz = dz;
  w.h = h;
  w.do1 = do1;
  for (const Tensor* t : std::initializer_list<const Tensor*>{&s.o1, &s.z, &dz, &do1})
    t->retag(MemTag::weight_inputs);
}

void LocalizedFilter::backward_weight(const WeightInputs& w) const {
  conv2_.backward_weight(w.dz, w.o1);
  conv1_.backward_weight(w.do1, w.h);
  norm_.backward_weight(w.norm);
}

}  // namespace nupipe::runtime
