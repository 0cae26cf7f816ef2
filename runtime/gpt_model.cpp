// gpt_model.cpp: building a model slice from specs, and driving its layers for one
// microbatch (forward, fused head, backward).
#include "runtime/gpt_model.h"

#include "runtime/check.h"

namespace nupipe::runtime {

std::vector<TensorSpec> gpt_specs(const ModelConfig& cfg, const StageSlice& slice) {
  std::vector<TensorSpec> specs;
  // A tied head on a slice without the embedding still needs the token table.
  if (slice.embedding || (slice.head && cfg.tie_embeddings)) {
    Embedding::add_specs(specs, cfg);
    if (!slice.embedding) {
      specs.pop_back();  // the head needs wte only, not wpe
      specs.back().tied_copy = true;
    }
  }
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) Block::add_specs(specs, cfg, i);
  if (slice.head) LmHead::add_specs(specs, cfg);
  return specs;
}

std::vector<std::pair<std::string, LayerCost>> gpt_costs(const ModelConfig& cfg,
                                                         const StageSlice& slice) {
  std::vector<std::pair<std::string, LayerCost>> costs;
  if (slice.embedding) costs.emplace_back("embedding", Embedding::cost(cfg));
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) {
    costs.emplace_back(Block::prefix(i), Block::cost(cfg));
  }
  if (slice.head) costs.emplace_back("head", LmHead::cost(cfg));
  return costs;
}

GptModel::GptModel(Backend& backend, const ModelConfig& cfg, StageSlice slice, int64_t pad_to,
                   int recompute_blocks)
    : cfg_(cfg), slice_(slice), recompute_blocks_(recompute_blocks),
      store_(backend, gpt_specs(cfg, slice), pad_to, cfg.dtype) {
  NUPIPE_CHECK(slice.layer_begin >= 0 && slice.layer_begin <= slice.layer_end &&
                   slice.layer_end <= cfg.n_layer,
               "bad stage slice");
  NUPIPE_CHECK(recompute_blocks >= 0 && recompute_blocks <= slice.layer_end - slice.layer_begin,
               "recompute_blocks " + std::to_string(recompute_blocks) + " outside the slice's " +
                   std::to_string(slice.layer_end - slice.layer_begin) + " blocks");
  if (slice.embedding) embedding_ = std::make_unique<Embedding>(store_, cfg_);
  blocks_.reserve(slice.layer_end - slice.layer_begin);
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) blocks_.emplace_back(store_, cfg_, i);
  if (slice.head) head_ = std::make_unique<LmHead>(store_, cfg_);
}

Tensor GptModel::forward(Pass& pass, const Tensor& input, int64_t batch) const {
  pass.batch = batch;
  Tensor x = input;
  if (embedding_) {
    pass.tokens = input;
    x = embedding_->forward(input);
  }
  pass.blocks.resize(blocks_.size());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    x = blocks_[i].forward(x, batch, pass.blocks[i],
                           static_cast<int>(i) < recompute_blocks_);
  }
  pass.hidden = x;
  return x;
}

double GptModel::head_forward_backward(Pass& pass, const Tensor& targets, float dloss,
                                       Tensor& dhidden) const {
  NUPIPE_CHECK(head_ != nullptr, "head_forward_backward on a slice without the head");
  return head_->forward_backward(pass.hidden, targets, dloss, &dhidden);
}

double GptModel::head_forward(const Pass& pass, const Tensor& targets) const {
  NUPIPE_CHECK(head_ != nullptr, "head_forward on a slice without the head");
  return head_->forward(pass.hidden, targets);
}

Tensor GptModel::backward(Pass& pass, const Tensor& dhidden) const {
  Tensor d = dhidden;
  pass.hidden = {};
  for (size_t i = blocks_.size(); i-- > 0;) d = blocks_[i].backward(d, pass.batch, pass.blocks[i]);
  pass.blocks.clear();
  if (embedding_) {
    embedding_->backward(d, pass.tokens);
    pass.tokens = {};
    return {};
  }
  return d;
}

double GptModel::forward_backward(const Tensor& tokens, const Tensor& targets, int64_t batch,
                                  float dloss) {
  Pass pass;
  forward(pass, tokens, batch);
  Tensor dhidden;
  const double loss = head_forward_backward(pass, targets, dloss, dhidden);
  backward(pass, dhidden);
  return loss;
}

double GptModel::loss_sum(const Tensor& tokens, const Tensor& targets, int64_t batch) {
  Pass pass;
  forward(pass, tokens, batch);
  return head_forward(pass, targets);
}

std::vector<float> GptModel::next_token_logits(const Tensor& tokens, int64_t n) const {
  NUPIPE_CHECK(embedding_ != nullptr && head_ != nullptr,
               "next_token_logits needs the whole model in one slice");
  NUPIPE_CHECK(tokens.numel() == cfg_.seq_len && n >= 1 && n <= cfg_.seq_len,
               "next_token_logits: " + std::to_string(n) + " tokens of a sequence of " +
                   std::to_string(tokens.numel()) + ", seq_len " + std::to_string(cfg_.seq_len));
  Pass pass;
  forward(pass, tokens, 1);
  return head_->logits(pass.hidden, n - 1);
}

}  // namespace nupipe::runtime
