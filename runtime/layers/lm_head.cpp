// lm_head.cpp: final LayerNorm + logits + cross-entropy, forward and backward.
#include "runtime/layers/lm_head.h"

#include "runtime/layers/embedding.h"

namespace nupipe::runtime {

void LmHead::add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg) {
  LayerNorm::add_specs(specs, "head.ln_f", cfg.d_model);
  if (!cfg.tie_embeddings) {
    specs.push_back(
        {kUntiedWeight, {cfg.vocab_size, cfg.d_model}, Init::normal, cfg.init_std, true});
  }
}

LayerCost LmHead::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, V = cfg.vocab_size;
  LayerCost c;
  c.params = 2 * C + (cfg.tie_embeddings ? 0 : V * C);
  // forward and backward run back to back: nothing is kept, the logits are transient
  c.workspace_bytes_per_token = 4 * (V + 2 * C + 2 + C);
  c.flops_per_token = 3.0 * 2.0 * V * C;
  return c;
}

LmHead::LmHead(const ParamStore& store, const ModelConfig& cfg)
    : ln_f_(store, "head.ln_f", cfg.ln_eps),
      w_(store.param(cfg.tie_embeddings ? Embedding::kTokenTable : kUntiedWeight)),
      dw_(store.grad(cfg.tie_embeddings ? Embedding::kTokenTable : kUntiedWeight)),
      V_(cfg.vocab_size),
      C_(cfg.d_model) {}

double LmHead::forward_backward(const Tensor& x, const Tensor& targets, float dloss,
                                Tensor* dx) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / C_;
  LayerNorm::Saved ln = ln_f_.forward(x, MemTag::workspace);
  Tensor logits = Tensor::empty(be, {N, V_}, DType::f32, MemTag::workspace);
  be.gemm(false, true, N, V_, C_, 1.0f, ln.out.f32(), C_, w_.f32(), C_, 0.0f, logits.f32(), V_);
  if (!dx) return be.cross_entropy_forward(logits.f32(), targets.i32(), N, V_);

  const double loss = be.cross_entropy_forward_backward(logits.f32(), logits.f32(),
                                                        targets.i32(), N, V_, dloss);
  // logits now hold d(logits): dW += dlogits^T ln_out ; d_ln = dlogits W
  be.gemm(true, false, V_, C_, N, 1.0f, logits.f32(), V_, ln.out.f32(), C_, 1.0f, dw_.f32(), C_);
  Tensor d_ln = Tensor::empty(be, {N, C_}, DType::f32, MemTag::workspace);
  be.gemm(false, false, N, C_, V_, 1.0f, logits.f32(), V_, w_.f32(), C_, 0.0f, d_ln.f32(), C_);
  logits = {};
  *dx = ln_f_.backward(d_ln, x, ln);
  return loss;
}

double LmHead::forward(const Tensor& x, const Tensor& targets) const {
  return forward_backward(x, targets, 0.0f, nullptr);
}

}  // namespace nupipe::runtime
