// embedding.cpp: embedding forward/backward.
#include "runtime/layers/embedding.h"

namespace nupipe::runtime {

void Embedding::add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg) {
  specs.push_back({kTokenTable, {cfg.vocab_size, cfg.d_model}, Init::normal, cfg.init_std, true});
  if (!cfg.llama()) {
    specs.push_back({kPositionTable, {cfg.seq_len, cfg.d_model}, Init::normal, cfg.init_std, true});
  }
}

LayerCost Embedding::cost(const ModelConfig& cfg) {
  LayerCost c;
  c.params = static_cast<int64_t>(cfg.vocab_size + (cfg.llama() ? 0 : cfg.seq_len)) * cfg.d_model;
  // its output, the first block's input
  c.activation_bytes_per_token = static_cast<int64_t>(dtype_size(cfg.dtype)) * cfg.d_model;
  c.flops_per_token = 2.0 * cfg.d_model;
  // W: the gradient of its output [C] and the token (i32)
  c.weight_bytes_per_token = static_cast<int64_t>(dtype_size(cfg.dtype)) * cfg.d_model + 4;
  return c;
}

Embedding::Embedding(const ParamStore& store, const ModelConfig& cfg)
    : wte_(store.param(kTokenTable)),
      wpe_(cfg.llama() ? Tensor{} : store.param(kPositionTable)),
      dwte_(store.grad(kTokenTable)),
      dwpe_(cfg.llama() ? Tensor{} : store.grad(kPositionTable)),
      T_(cfg.seq_len),
      C_(cfg.d_model) {}

Tensor Embedding::forward(const Tensor& tokens) const {
  Backend& be = wte_.backend();
  const int64_t N = tokens.numel();
  Tensor x = Tensor::empty(be, {N, C_}, wte_.dtype(), MemTag::activations);
  be.embedding_forward(x.data(), tokens.i32(), wte_.data(),
                       wpe_.defined() ? ConstDevPtr(wpe_.data()) : ConstDevPtr{}, N, T_, C_);
  return x;
}

void Embedding::backward(const Tensor& dx, const Tensor& tokens) const {
  wte_.backend().embedding_backward(dwte_.f32(), dwpe_.defined() ? dwpe_.f32() : nullptr,
                                    dx.data(), tokens.i32(),
                                    tokens.numel(), T_, C_);
}

}  // namespace nupipe::runtime
