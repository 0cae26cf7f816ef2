// attention.cpp: causal self-attention forward/backward. Per sequence b, the H heads are one
// batched GEMM over strided column blocks of qkv [T, 3C], so no head-split copies are made.
#include "runtime/layers/attention.h"

#include <algorithm>
#include <cmath>

namespace nupipe::runtime {

void CausalSelfAttention::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                                    const ModelConfig& cfg) {
  const float resid_std = cfg.init_std / std::sqrt(2.0f * cfg.n_layer);
  Linear::add_specs(specs, prefix + ".qkv", cfg.d_model, 3 * cfg.d_model, cfg.init_std);
  Linear::add_specs(specs, prefix + ".proj", cfg.d_model, cfg.d_model, resid_std);
}

LayerCost CausalSelfAttention::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, T = cfg.seq_len, H = cfg.n_head;
  const int64_t es = static_cast<int64_t>(dtype_size(cfg.dtype));  // activations' element
  LayerCost c;
  c.params = 3 * C * C + 3 * C + C * C + C;
  if (cfg.fused_attention) {
    // qkv [3C] + att [C] per token, and an fp32 log-sum-exp per head
    c.activation_bytes_per_token = es * (3 * C + C) + 4 * H;
    // backward: d_att [C] and dqkv [3C] with the kernel's fp32 delta [H], which is released
    // before dx [C] is allocated
    c.backward_bytes_per_token = std::max(es * (C + 3 * C) + 4 * H, es * (C + 3 * C + C));
  } else {
    // qkv [3C] + probs [H*T] + att [C] per token
    c.activation_bytes_per_token = es * (3 * C + H * T + C);
    // backward: d_att [C], dqkv [3C] and dx [C] per token, and one sequence's dP [H, T, T]
    // (reused by every sequence of the microbatch)
    c.backward_bytes_per_token = es * (C + 3 * C + C);
    c.backward_fixed_bytes = es * H * T * T;
  }
  // matmuls: 2 flops/MAC, backward twice forward. Projections 4C^2; scores and values 2*T*C
  // (causal masking is not exploited by the dense GEMMs, so full T).
  c.flops_per_token = 3.0 * 2.0 * (4.0 * C * C + 2.0 * T * C);
  // W: qkv's input [C] and output gradient [3C], proj's input (att) [C] and output gradient [C]
  c.weight_bytes_per_token = es * ((C + 3 * C) + (C + C));
  return c;
}

CausalSelfAttention::CausalSelfAttention(const ParamStore& store, const std::string& prefix,
                                         const ModelConfig& cfg)
    : qkv_(store, prefix + ".qkv"),
      proj_(store, prefix + ".proj"),
      T_(cfg.seq_len),
      H_(cfg.n_head),
      D_(cfg.head_dim()),
      C_(cfg.d_model),
      fused_(cfg.fused_attention) {}

void CausalSelfAttention::forward(const Tensor& x, int64_t B, Tensor& out, Saved& s) const {
  Backend& be = x.backend();
  const int64_t N = B * T_, C3 = 3 * C_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
  s.qkv = Tensor::empty(be, {N, C3}, x.dtype(), MemTag::activations);
  s.att = Tensor::empty(be, {N, C_}, x.dtype(), MemTag::activations);
  qkv_.forward(x, s.qkv);
  if (fused_) {
    s.lse = Tensor::empty(be, {B, H_, T_}, DType::f32, MemTag::activations);
    be.attention_forward(s.att.data(), s.lse.f32(), s.qkv.data(), B, T_, H_, H_, D_, scale);
  } else {
    const int64_t TT = T_ * T_;
    s.probs = Tensor::empty(be, {B, H_, T_, T_}, x.dtype(), MemTag::activations);
    for (int64_t b = 0; b < B; ++b) {
      const ConstDevPtr q = s.qkv.data() + b * T_ * C3;
      const DevPtr p = s.probs.data() + b * H_ * TT;
      // scores[h] = q_h k_h^T, then causal softmax in place
      be.gemm_batched(false, true, T_, T_, D_, 1.0f, q, C3, D_, q + C_, C3, D_, 0.0f, p, T_, TT,
                      H_);
      be.causal_softmax_forward(p, p, H_, T_, scale);
      // att[:, h] = probs[h] v_h
      be.gemm_batched(false, false, T_, D_, T_, 1.0f, p, T_, TT, q + 2 * C_, C3, D_, 0.0f,
                      s.att.data() + b * T_ * C_, C_, D_, H_);
    }
  }
  proj_.forward(s.att, out, 1.0f);
}

Tensor CausalSelfAttention::backward(const Tensor& dout, const Tensor& x, int64_t B,
                                     const Saved& s) const {
  return backward_impl(dout, x, B, s, nullptr);
}

Tensor CausalSelfAttention::backward_input(const Tensor& dout, const Tensor& x, int64_t B,
                                           const Saved& s, WeightInputs& w) const {
  return backward_impl(dout, x, B, s, &w);
}

void CausalSelfAttention::backward_weight(const WeightInputs& w) const {
  proj_.backward_weight(w.proj);
  qkv_.backward_weight(w.qkv);
}

// Fused (w null): each projection's weight gradient where it is due. Split: none, and what
// they read is kept; the buffers live and die as in the fused path (equal workspace peaks).
Tensor CausalSelfAttention::backward_impl(const Tensor& dout, const Tensor& x, int64_t B,
                                          const Saved& s, WeightInputs* w) const {
  Backend& be = x.backend();
  const int64_t N = B * T_, C3 = 3 * C_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
  Tensor d_att = Tensor::empty(be, {N, C_}, x.dtype(), MemTag::workspace);
  if (!w) proj_.backward_weight(dout, s.att);
  proj_.backward_input(dout, d_att);

  Tensor dqkv = Tensor::empty(be, {N, C3}, x.dtype(), MemTag::workspace);
  Tensor dp;  // unfused: one sequence's score gradient, held until dx exists (Block::cost)
  if (fused_) {  // delta is released at the end of this block, before dx
    Tensor delta = Tensor::empty(be, {B, H_, T_}, DType::f32, MemTag::workspace);
    be.attention_backward(dqkv.data(), delta.f32(), d_att.data(), s.qkv.data(), s.att.data(),
                          s.lse.f32(), B, T_, H_, H_, D_, scale);
  } else {
    const int64_t TT = T_ * T_;
    dp = Tensor::empty(be, {H_, T_, T_}, x.dtype(), MemTag::workspace);
    for (int64_t b = 0; b < B; ++b) {
      const ConstDevPtr q = s.qkv.data() + b * T_ * C3;
      const ConstDevPtr p = s.probs.data() + b * H_ * TT;
      const ConstDevPtr g = d_att.data() + b * T_ * C_;
      const DevPtr dq = dqkv.data() + b * T_ * C3;
      // dP = d_att_h v_h^T ; dv_h = P^T d_att_h
      be.gemm_batched(false, true, T_, T_, D_, 1.0f, g, C_, D_, q + 2 * C_, C3, D_, 0.0f,
                      dp.data(), T_, TT, H_);
      be.gemm_batched(true, false, T_, D_, T_, 1.0f, p, T_, TT, g, C_, D_, 0.0f, dq + 2 * C_,
                      C3, D_, H_);
      // dS (scaled, masked) in place, then dq_h = dS k_h ; dk_h = dS^T q_h
      be.causal_softmax_backward(dp.data(), p, dp.data(), H_, T_, scale);
      be.gemm_batched(false, false, T_, D_, T_, 1.0f, dp.data(), T_, TT, q + C_, C3, D_, 0.0f,
                      dq, C3, D_, H_);
      be.gemm_batched(true, false, T_, D_, T_, 1.0f, dp.data(), T_, TT, q, C3, D_, 0.0f,
                      dq + C_, C3, D_, H_);
    }
  }
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  if (!w) qkv_.backward_weight(dqkv, x);
  qkv_.backward_input(dqkv, dx);
  if (w) {
    w->proj = {s.att, dout};
    w->qkv = {x, dqkv};
    s.att.retag(MemTag::weight_inputs);
    dqkv.retag(MemTag::weight_inputs);
  }
  return dx;
}

}  // namespace nupipe::runtime
