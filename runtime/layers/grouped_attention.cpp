// grouped_attention.cpp: llama attention forward/backward. Unfused, the query heads that share
// a key/value head are visited as `group` strided batches (query head h = kv * group + j for
// batch j), so no repeated k, v is ever made; the key/value gradients sum the batches.
#include "runtime/layers/grouped_attention.h"

#include <algorithm>
#include <cmath>

namespace nupipe::runtime {

void GroupedQueryAttention::add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                                      const ModelConfig& cfg) {
  const float resid_std = cfg.init_std / std::sqrt(2.0f * cfg.n_layer);
  Linear::add_specs(specs, prefix + ".qkv", cfg.d_model, cfg.qkv_width(), cfg.init_std, false);
  Linear::add_specs(specs, prefix + ".proj", cfg.d_model, cfg.d_model, resid_std, false);
  if (cfg.lfa) LocalizedFilter::add_specs(specs, prefix + ".lfa", cfg);
}

LayerCost GroupedQueryAttention::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, T = cfg.seq_len, H = cfg.n_head, Q = cfg.qkv_width();
  const int64_t es = static_cast<int64_t>(dtype_size(cfg.dtype));
  LayerCost c;
  c.params = Q * C + C * C;
  if (cfg.fused_attention) {
    // qkv [Q] + att [C] per token, and an fp32 log-sum-exp per query head
    c.activation_bytes_per_token = es * (Q + C) + 4 * H;
    // backward: d_att [C] and dqkv [Q] with the kernel's fp32 delta [H], released before dx
    c.backward_bytes_per_token = std::max(es * (C + Q) + 4 * H, es * (C + Q + C));
  } else {
    c.activation_bytes_per_token = es * (Q + H * T + C);
    c.backward_bytes_per_token = es * (C + Q + C);
    c.backward_fixed_bytes = es * H * T * T;  // one sequence's dP [H, T, T]
  }
  // Projections 2 (Q + C) C per token forward, scores and values 2 T C, the rotation 6 per
  // rotated element; backward twice forward.
  const double rotated = static_cast<double>(H + cfg.kv_heads()) * cfg.head_dim();
  c.flops_per_token = 3.0 * (2.0 * (Q + C) * C + 4.0 * T * C + 6.0 * rotated);
  c.weight_bytes_per_token = es * ((C + Q) + (C + C));  // qkv's x, dqkv; proj's att, dout
  if (cfg.lfa) {
    const LayerCost f = LocalizedFilter::cost(cfg);
    c.params += f.params;
    c.flops_per_token += f.flops_per_token;
    c.activation_bytes_per_token += LocalizedFilter::activation_bytes_per_token(cfg);
    // backward: d_att [C] and dqkv [Q] are held while dx [C], df [C] and, in the filter, dz [C]
    // and do1 [C/2] are made (the fused kernel's delta is released before)
    const int64_t filter = es * (C + Q + C + C + C + C / 2);
    c.backward_bytes_per_token = std::max(c.backward_bytes_per_token, filter);
    // W also reads the filter's o1, z, f, rstd (kept from forward) and dz, do1, df (from B)
    c.weight_bytes_per_token += LocalizedFilter::activation_bytes_per_token(cfg) +
                                LocalizedFilter::weight_extra_bytes_per_token(cfg);
  }
  return c;
}

GroupedQueryAttention::GroupedQueryAttention(const ParamStore& store, const std::string& prefix,
                                             const ModelConfig& cfg)
    : qkv_(store, prefix + ".qkv"),
      proj_(store, prefix + ".proj"),
      T_(cfg.seq_len),
      H_(cfg.n_head),
      Hkv_(cfg.kv_heads()),
      D_(cfg.head_dim()),
      C_(cfg.d_model),
      theta_(cfg.rope_theta),
      fused_(cfg.fused_attention) {
  if (cfg.lfa) lfa_.emplace(store, prefix + ".lfa", cfg);
}

void GroupedQueryAttention::forward(const Tensor& x, int64_t B, Tensor& out, Saved& s) const {
  Backend& be = x.backend();
  const int64_t N = B * T_, Q = (H_ + 2 * Hkv_) * D_, KV = H_ * D_, g = H_ / Hkv_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
  s.qkv = Tensor::empty(be, {N, Q}, x.dtype(), MemTag::activations);
  s.att = Tensor::empty(be, {N, C_}, x.dtype(), MemTag::activations);
  if (lfa_) {  // q, k from the filtered input, v from x
    lfa_->forward(x, s.lfa);
    qkv_.forward_rows(s.lfa.norm.out, 0, 2 * KV, s.qkv.data(), Q);
    qkv_.forward_rows(x, 2 * KV, KV, s.qkv.data() + 2 * KV, Q);
  } else {
    qkv_.forward(x, s.qkv);
  }
  be.rope(s.qkv.data(), N, T_, Q, H_ + Hkv_, D_, theta_, false);  // q and k heads
  if (fused_) {
    s.lse = Tensor::empty(be, {B, H_, T_}, DType::f32, MemTag::activations);
    be.attention_forward(s.att.data(), s.lse.f32(), s.qkv.data(), B, T_, H_, Hkv_, D_, scale);
    proj_.forward(s.att, out, 1.0f);
    return;
  }
  const int64_t TT = T_ * T_;
  s.probs = Tensor::empty(be, {B, H_, T_, T_}, x.dtype(), MemTag::activations);
  for (int64_t b = 0; b < B; ++b) {
    const ConstDevPtr q = s.qkv.data() + b * T_ * Q, k = q + KV, v = k + Hkv_ * D_;
    const DevPtr p = s.probs.data() + b * H_ * TT;
    const DevPtr a = s.att.data() + b * T_ * C_;
    for (int64_t j = 0; j < g; ++j) {  // scores[h] = q_h k_kv^T for h = kv * g + j
      be.gemm_batched(false, true, T_, T_, D_, 1.0f, q + j * D_, Q, g * D_, k, Q, D_, 0.0f,
                      p + j * TT, T_, g * TT, Hkv_);
    }
    be.causal_softmax_forward(p, p, H_, T_, scale);
    for (int64_t j = 0; j < g; ++j) {  // att[:, h] = probs[h] v_kv
      be.gemm_batched(false, false, T_, D_, T_, 1.0f, p + j * TT, T_, g * TT, v, Q, D_, 0.0f,
                      a + j * D_, C_, g * D_, Hkv_);
    }
  }
  proj_.forward(s.att, out, 1.0f);
}

Tensor GroupedQueryAttention::backward(const Tensor& dout, const Tensor& x, int64_t B,
                                       const Saved& s) const {
  return backward_impl(dout, x, B, s, nullptr);
}

Tensor GroupedQueryAttention::backward_input(const Tensor& dout, const Tensor& x, int64_t B,
                                             const Saved& s, WeightInputs& w) const {
  return backward_impl(dout, x, B, s, &w);
}

void GroupedQueryAttention::backward_weight(const WeightInputs& w) const {
  proj_.backward_weight(w.proj);
  if (!lfa_) {
    qkv_.backward_weight(w.qkv);
    return;
  }
  filtered_weight_gradients(w.qkv.dy, w.qkv.x, w.v_x);
  lfa_->backward_weight(w.lfa);
}

void GroupedQueryAttention::filtered_weight_gradients(const Tensor& dqkv, const Tensor& f,
                                                      const Tensor& x) const {
  const int64_t KV = H_ * D_, Q = 3 * KV;
  qkv_.backward_weight_rows(dqkv.data() + 2 * KV, Q, 2 * KV, KV, x);  // v's rows, from x
  qkv_.backward_weight_rows(dqkv.data(), Q, 0, 2 * KV, f);            // q and k's, from f
}

Tensor GroupedQueryAttention::filtered_input_gradient(const Tensor& x, const Tensor& dqkv,
                                                      const Saved& s, WeightInputs* w) const {
  Backend& be = x.backend();
  const int64_t KV = H_ * D_, Q = 3 * KV;
  const Tensor& f = s.lfa.norm.out;
  if (!w) filtered_weight_gradients(dqkv, f, x);
  Tensor dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  qkv_.backward_input_rows(dqkv.data() + 2 * KV, Q, 2 * KV, KV, dx, false);
  Tensor df = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  qkv_.backward_input_rows(dqkv.data(), Q, 0, 2 * KV, df, false);
  if (!w) {
    lfa_->backward(df, x, s.lfa, dx);
    return dx;
  }
  lfa_->backward_input(df, x, s.lfa, dx, w->lfa);
  w->qkv = {f, dqkv};
  w->v_x = x;
  f.retag(MemTag::weight_inputs);
  df.retag(MemTag::weight_inputs);
  return dx;
}

Tensor GroupedQueryAttention::backward_impl(const Tensor& dout, const Tensor& x, int64_t B,
                                            const Saved& s, WeightInputs* w) const {
  Backend& be = x.backend();
  const int64_t N = B * T_, Q = (H_ + 2 * Hkv_) * D_, KV = H_ * D_, g = H_ / Hkv_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
  Tensor d_att = Tensor::empty(be, {N, C_}, x.dtype(), MemTag::workspace);
  if (!w) proj_.backward_weight(dout, s.att);
  proj_.backward_input(dout, d_att);

  Tensor dqkv = Tensor::empty(be, {N, Q}, x.dtype(), MemTag::workspace);
  Tensor dp;  // unfused: one sequence's score gradient, held until dx exists
  if (fused_) {
    Tensor delta = Tensor::empty(be, {B, H_, T_}, DType::f32, MemTag::workspace);
    be.attention_backward(dqkv.data(), delta.f32(), d_att.data(), s.qkv.data(), s.att.data(),
                          s.lse.f32(), B, T_, H_, Hkv_, D_, scale);
  } else {
    const int64_t TT = T_ * T_;
    dp = Tensor::empty(be, {H_, T_, T_}, x.dtype(), MemTag::workspace);
    for (int64_t b = 0; b < B; ++b) {
      const ConstDevPtr q = s.qkv.data() + b * T_ * Q, k = q + KV, v = k + Hkv_ * D_;
      const ConstDevPtr p = s.probs.data() + b * H_ * TT;
      const ConstDevPtr ga = d_att.data() + b * T_ * C_;
      const DevPtr dq = dqkv.data() + b * T_ * Q, dk = dq + KV, dv = dk + Hkv_ * D_;
      for (int64_t j = 0; j < g; ++j) {
        // dP_h = d_att_h v_kv^T ; dv_kv (+)= P_h^T d_att_h
        be.gemm_batched(false, true, T_, T_, D_, 1.0f, ga + j * D_, C_, g * D_, v, Q, D_, 0.0f,
                        dp.data() + j * TT, T_, g * TT, Hkv_);
        be.gemm_batched(true, false, T_, D_, T_, 1.0f, p + j * TT, T_, g * TT, ga + j * D_, C_,
                        g * D_, j == 0 ? 0.0f : 1.0f, dv, Q, D_, Hkv_);
      }
      // dS (scaled, masked) in place, then dq_h = dS_h k_kv ; dk_kv (+)= dS_h^T q_h
      be.causal_softmax_backward(dp.data(), p, dp.data(), H_, T_, scale);
      for (int64_t j = 0; j < g; ++j) {
        be.gemm_batched(false, false, T_, D_, T_, 1.0f, dp.data() + j * TT, T_, g * TT, k, Q,
                        D_, 0.0f, dq + j * D_, Q, g * D_, Hkv_);
        be.gemm_batched(true, false, T_, D_, T_, 1.0f, dp.data() + j * TT, T_, g * TT,
                        q + j * D_, Q, g * D_, j == 0 ? 0.0f : 1.0f, dk, Q, D_, Hkv_);
      }
    }
  }
  be.rope(dqkv.data(), N, T_, Q, H_ + Hkv_, D_, theta_, true);  // d(q, k) before the rotation
  if (lfa_) {
    Tensor dx = filtered_input_gradient(x, dqkv, s, w);
    if (w) {
      w->proj = {s.att, dout};
      s.att.retag(MemTag::weight_inputs);
      dqkv.retag(MemTag::weight_inputs);
    }
    return dx;
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
