// lm_head.cpp: final LayerNorm + logits + cross-entropy, forward and backward (fused, or the
// input gradient then the weight gradients), a chunk of tokens at a time through reused buffers.
#include "runtime/layers/lm_head.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/layers/embedding.h"
#include "runtime/layers/rms_norm.h"

namespace nupipe::runtime {

namespace {
constexpr const char* kLnPrefix = "head.ln_f";
constexpr const char* kRmsPrefix = "head.norm";  // llama

// Rows one chunk holds for a call over `tokens` tokens.
int64_t chunk_rows(int64_t chunk, int64_t tokens) {
  return chunk > 0 ? std::min(chunk, tokens) : tokens;
}
}  // namespace

void LmHead::add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg) {
  if (cfg.llama()) RmsNorm::add_specs(specs, kRmsPrefix, cfg.d_model);
  else LayerNorm::add_specs(specs, kLnPrefix, cfg.d_model);
  if (!cfg.tie_embeddings) {
    specs.push_back(
        {kUntiedWeight, {cfg.vocab_size, cfg.d_model}, Init::normal, cfg.init_std, true});
  }
}

LayerCost LmHead::cost(const ModelConfig& cfg) {
  const int64_t C = cfg.d_model, V = cfg.vocab_size;
  LayerCost c;
  c.params = (cfg.llama() ? C : 2 * C) + (cfg.tie_embeddings ? 0 : V * C);
  // Forward and backward run back to back: nothing is kept. Transient: the chunk buffers
  // (loss_workspace), for every token when unchunked, for at most loss_chunk tokens when
  // chunked (per row: logits V, the LayerNorm output C, reused for d(LayerNorm output) once dW
  // has consumed it, mean and rstd); and dx [tokens, C] (workspace), which the stage's backward
  // then consumes.
  c.backward_bytes_per_token = static_cast<int64_t>(dtype_size(cfg.dtype)) * C;
  c.chunk_tokens = cfg.loss_chunk;  // the chunk buffers are fp32 in any precision
  c.chunk_bytes_per_token = 4 * (V + C + (cfg.llama() ? 1 : 2));  // RMSNorm: no mean
  c.flops_per_token = 3.0 * 2.0 * V * C;
  // W (forward_input, backward_weight): its input [C], the final LayerNorm's output gradient
  // [C] in fp32 and the target (i32); W recomputes the chunks' logits in its chunk buffers.
  c.weight_bytes_per_token = static_cast<int64_t>(dtype_size(cfg.dtype)) * C + 4 * C + 4;
  return c;
}

LmHead::LmHead(const ParamStore& store, const ModelConfig& cfg)
    : rms_(cfg.llama()),
      ln_w_(store.param(std::string(rms_ ? kRmsPrefix : kLnPrefix) + ".weight")),
      ln_b_(rms_ ? Tensor{} : store.param(std::string(kLnPrefix) + ".bias")),
      ln_dw_(store.grad(std::string(rms_ ? kRmsPrefix : kLnPrefix) + ".weight")),
      ln_db_(rms_ ? Tensor{} : store.grad(std::string(kLnPrefix) + ".bias")),
      w_(store.param(cfg.tie_embeddings ? Embedding::kTokenTable : kUntiedWeight)),
      dw_(store.grad(cfg.tie_embeddings ? Embedding::kTokenTable : kUntiedWeight)),
      V_(cfg.vocab_size),
      C_(cfg.d_model),
      chunk_(cfg.loss_chunk),
      eps_(cfg.llama() ? cfg.norm_eps : cfg.ln_eps) {
  NUPIPE_CHECK(chunk_ >= 0, "loss_chunk must be >= 0");
}

LmHead::Chunk LmHead::chunk_buffers(Backend& be, int64_t K) const {
  // Reused by every chunk. `ln` holds the LayerNorm output, then (in forward_backward, after
  // the dW product has read it) the gradient with respect to it.
  return {Tensor::empty(be, {K, C_}, DType::f32, MemTag::loss_workspace),
          rms_ ? Tensor{} : Tensor::empty(be, {K}, DType::f32, MemTag::loss_workspace),
          Tensor::empty(be, {K}, DType::f32, MemTag::loss_workspace),
          Tensor::empty(be, {K, V_}, DType::f32, MemTag::loss_workspace)};
}

void LmHead::chunk_logits(const Chunk& c, const Tensor& x, int64_t s, int64_t k) const {
  Backend& be = x.backend();
  if (rms_) {
    be.rmsnorm_forward(c.ln.data(), c.rstd.f32(), x.data() + s * C_, ln_w_.data(), k, C_, eps_);
  } else {
    be.layernorm_forward(c.ln.data(), c.mean.f32(), c.rstd.f32(), x.data() + s * C_,
                         ln_w_.data(), ln_b_.data(), k, C_, eps_);
  }
  be.gemm(false, true, k, V_, C_, 1.0f, c.ln.data(), C_, w_.data(), C_, 0.0f, c.logits.data(),
          V_);
}

double LmHead::forward_backward(const Tensor& x, const Tensor& targets, float dloss,
                                Tensor* dx) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / C_;
  NUPIPE_CHECK(targets.numel() == N, "LmHead: targets and hidden states differ in tokens");
  const int64_t K = chunk_rows(chunk_, N);
  if (dx) *dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  if (N == 0) return 0.0;
  const Chunk c = chunk_buffers(be, K);
  double loss = 0.0;
  for (int64_t s = 0; s < N; s += K) {
    const int64_t k = std::min(K, N - s);
    const int32_t* ts = targets.i32() + s;
    chunk_logits(c, x, s, k);
    if (!dx) {
      loss += be.cross_entropy_forward(c.logits.f32(), ts, k, V_);
      continue;
    }
    loss += be.cross_entropy_forward_backward(c.logits.f32(), c.logits.f32(), ts, k, V_, dloss);
    // logits now hold d(logits): dW += dlogits^T ln ; then ln := dlogits W ; dx = LN backward
    be.gemm(true, false, V_, C_, k, 1.0f, c.logits.data(), V_, c.ln.data(), C_, 1.0f,
            dw_.data(), C_);
    be.gemm(false, false, k, C_, V_, 1.0f, c.logits.data(), V_, w_.data(), C_, 0.0f,
            c.ln.data(), C_);
    if (rms_) {  // the weight part first: it reads c.ln, which dx does not overwrite
      norm_backward_weight(c.ln.data(), x.data() + s * C_, c, k);
      norm_backward_input(dx->data() + s * C_, c.ln.data(), x.data() + s * C_, c, k);
    } else {
      be.layernorm_backward(dx->data() + s * C_, ln_dw_.f32(), ln_db_.f32(), c.ln.data(),
                            x.data() + s * C_, ln_w_.data(), c.mean.f32(), c.rstd.f32(), k, C_);
    }
  }
  return loss;
}

double LmHead::forward_input(const Tensor& x, const Tensor& targets, float dloss, Tensor& dx,
                             WeightInputs& w) const {
  Backend& be = x.backend();
  const int64_t N = x.numel() / C_;
  NUPIPE_CHECK(targets.numel() == N, "LmHead: targets and hidden states differ in tokens");
  const int64_t K = chunk_rows(chunk_, N);
  dx = Tensor::empty(be, x.shape(), x.dtype(), MemTag::workspace);
  w = {x, Tensor::empty(be, {N}, DType::i32, MemTag::weight_inputs),
       Tensor::empty(be, {N, C_}, DType::f32, MemTag::weight_inputs), dloss};
  if (N == 0) return 0.0;
  be.copy(w.targets.data().ptr, targets.data().ptr, targets.bytes());
  const Chunk c = chunk_buffers(be, K);
  double loss = 0.0;
  for (int64_t s = 0; s < N; s += K) {
    const int64_t k = std::min(K, N - s);
    chunk_logits(c, x, s, k);
    loss += be.cross_entropy_forward_backward(c.logits.f32(), c.logits.f32(),
                                              targets.i32() + s, k, V_, dloss);
    // d(LayerNorm output) = dlogits W, kept for W's dw, db; dx = LN backward's input part
    const DevPtr dln = w.dln.data() + s * C_;
    be.gemm(false, false, k, C_, V_, 1.0f, c.logits.data(), V_, w_.data(), C_, 0.0f, dln, C_);
    norm_backward_input(dx.data() + s * C_, dln, x.data() + s * C_, c, k);
  }
  return loss;
}

void LmHead::backward_weight(const WeightInputs& w) const {
  Backend& be = w.x.backend();
  const int64_t N = w.x.numel() / C_;
  if (N == 0) return;
  const int64_t K = chunk_rows(chunk_, N);
  const Chunk c = chunk_buffers(be, K);
  for (int64_t s = 0; s < N; s += K) {
    const int64_t k = std::min(K, N - s);
    chunk_logits(c, w.x, s, k);  // the same LayerNorm and logits, bit for bit
    be.cross_entropy_forward_backward(c.logits.f32(), c.logits.f32(), w.targets.i32() + s, k, V_,
                                      w.dloss);
    be.gemm(true, false, V_, C_, k, 1.0f, c.logits.data(), V_, c.ln.data(), C_, 1.0f,
            dw_.data(), C_);
    norm_backward_weight(w.dln.data() + s * C_, w.x.data() + s * C_, c, k);
  }
}

void LmHead::norm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, const Chunk& c,
                                 int64_t k) const {
  Backend& be = ln_w_.backend();
  if (rms_) be.rmsnorm_backward_input(dx, dout, x, ln_w_.data(), c.rstd.f32(), k, C_);
  else be.layernorm_backward_input(dx, dout, x, ln_w_.data(), c.mean.f32(), c.rstd.f32(), k, C_);
}

void LmHead::norm_backward_weight(ConstDevPtr dout, ConstDevPtr x, const Chunk& c,
                                  int64_t k) const {
  Backend& be = ln_w_.backend();
  if (rms_) be.rmsnorm_backward_weight(ln_dw_.f32(), dout, x, c.rstd.f32(), k, C_);
  else be.layernorm_backward_weight(ln_dw_.f32(), ln_db_.f32(), dout, x, c.mean.f32(),
                                    c.rstd.f32(), k, C_);
}

double LmHead::forward(const Tensor& x, const Tensor& targets) const {
  return forward_backward(x, targets, 0.0f, nullptr);
}

std::vector<float> LmHead::logits(const Tensor& x, int64_t row) const {
  Backend& be = x.backend();
  NUPIPE_CHECK(row >= 0 && row < x.numel() / C_, "LmHead::logits: row " + std::to_string(row) +
                                                      " outside the hidden states");
  Tensor ln = Tensor::empty(be, {1, C_}, DType::f32, MemTag::loss_workspace);
  Tensor mean = Tensor::empty(be, {1}, DType::f32, MemTag::loss_workspace);
  Tensor rstd = Tensor::empty(be, {1}, DType::f32, MemTag::loss_workspace);
  Tensor out = Tensor::empty(be, {1, V_}, DType::f32, MemTag::loss_workspace);
  if (rms_) {
    be.rmsnorm_forward(ln.data(), rstd.f32(), x.data() + row * C_, ln_w_.data(), 1, C_, eps_);
  } else {
    be.layernorm_forward(ln.data(), mean.f32(), rstd.f32(), x.data() + row * C_, ln_w_.data(),
                         ln_b_.data(), 1, C_, eps_);
  }
  be.gemm(false, true, 1, V_, C_, 1.0f, ln.data(), C_, w_.data(), C_, 0.0f, out.data(), V_);
  return to_host(out);
}

}  // namespace nupipe::runtime
