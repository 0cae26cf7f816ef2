// stage_model.cpp: building a model slice from specs, and driving its layers for one
// microbatch (forward, fused head, backward fused or as input then weight gradients), the
// blocks of either family through the same templates.
#include "runtime/stage_model.h"

#include "runtime/check.h"

namespace nupipe::runtime {

std::vector<TensorSpec> stage_specs(const ModelConfig& cfg, const StageSlice& slice) {
  std::vector<TensorSpec> specs;
  // A tied head on a slice without the embedding still needs the token table.
  if (slice.embedding || (slice.head && cfg.tie_embeddings)) {
    const size_t first = specs.size();
    Embedding::add_specs(specs, cfg);
    if (!slice.embedding) {
      specs.resize(first + 1);  // the head needs wte only, not wpe
      specs.back().tied_copy = true;
    }
  }
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) {
    if (cfg.llama()) LlamaBlock::add_specs(specs, cfg, i);
    else Block::add_specs(specs, cfg, i);
  }
  if (slice.head) LmHead::add_specs(specs, cfg);
  return specs;
}

std::vector<std::pair<std::string, LayerCost>> stage_costs(const ModelConfig& cfg,
                                                         const StageSlice& slice) {
  std::vector<std::pair<std::string, LayerCost>> costs;
  if (slice.embedding) costs.emplace_back("embedding", Embedding::cost(cfg));
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) {
    costs.emplace_back(Block::prefix(i), block_cost(cfg));
  }
  if (slice.head) costs.emplace_back("head", LmHead::cost(cfg));
  return costs;
}

LayerCost block_cost(const ModelConfig& cfg) {
  return cfg.llama() ? LlamaBlock::cost(cfg) : Block::cost(cfg);
}

StageModel::StageModel(Backend& backend, const ModelConfig& cfg, StageSlice slice, int64_t pad_to,
                   int recompute_blocks)
    : cfg_(cfg), slice_(slice), recompute_blocks_(recompute_blocks),
      store_(backend, stage_specs(cfg, slice), pad_to, cfg.dtype) {
  NUPIPE_CHECK(slice.layer_begin >= 0 && slice.layer_begin <= slice.layer_end &&
                   slice.layer_end <= cfg.n_layer,
               "bad stage slice");
  NUPIPE_CHECK(recompute_blocks >= 0 && recompute_blocks <= slice.layer_end - slice.layer_begin,
               "recompute_blocks " + std::to_string(recompute_blocks) + " outside the slice's " +
                   std::to_string(slice.layer_end - slice.layer_begin) + " blocks");
  if (slice.embedding) embedding_ = std::make_unique<Embedding>(store_, cfg_);
  for (int i = slice.layer_begin; i < slice.layer_end; ++i) {
    if (cfg.llama()) llama_blocks_.emplace_back(store_, cfg_, i);
    else blocks_.emplace_back(store_, cfg_, i);
  }
  if (slice.head) head_ = std::make_unique<LmHead>(store_, cfg_);
}

Tensor StageModel::forward(Pass& pass, const Tensor& input, int64_t batch) const {
  NUPIPE_CHECK(!pass.weights_pending && !pass.head_weights.x.defined(),
               "forward on a pass whose weight gradients are pending (backward_weight not run)");
  pass.batch = batch;
  Tensor x = input;
  if (embedding_) {
    pass.tokens = input;
    x = embedding_->forward(input);
  }
  x = cfg_.llama() ? forward_blocks(llama_blocks_, pass.llama_blocks, x, batch)
                   : forward_blocks(blocks_, pass.blocks, x, batch);
  pass.hidden = x;
  return x;
}

template <class B>
Tensor StageModel::forward_blocks(const std::vector<B>& blocks,
                                  std::vector<typename B::Saved>& saved, Tensor x,
                                  int64_t batch) const {
  saved.resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    x = blocks[i].forward(x, batch, saved[i], static_cast<int>(i) < recompute_blocks_);
  }
  return x;
}

template <class B>
Tensor StageModel::backward_blocks(const std::vector<B>& blocks,
                                   std::vector<typename B::Saved>& saved, Tensor d,
                                   int64_t batch) const {
  for (size_t i = blocks.size(); i-- > 0;) d = blocks[i].backward(d, batch, saved[i]);
  saved.clear();
  return d;
}

double StageModel::head_forward_backward(Pass& pass, const Tensor& targets, float dloss,
                                       Tensor& dhidden) const {
  NUPIPE_CHECK(head_ != nullptr, "head_forward_backward on a slice without the head");
  return head_->forward_backward(pass.hidden, targets, dloss, &dhidden);
}

double StageModel::head_forward(const Pass& pass, const Tensor& targets) const {
  NUPIPE_CHECK(head_ != nullptr, "head_forward on a slice without the head");
  return head_->forward(pass.hidden, targets);
}

Tensor StageModel::backward(Pass& pass, const Tensor& dhidden) const {
  NUPIPE_CHECK(!pass.weights_pending, "backward of a pass whose backward_weight is pending");
  if (pass.head_weights.x.defined()) {
    head_->backward_weight(pass.head_weights);
    pass.head_weights = {};
  }
  pass.hidden = {};
  Tensor d = cfg_.llama() ? backward_blocks(llama_blocks_, pass.llama_blocks, dhidden, pass.batch)
                          : backward_blocks(blocks_, pass.blocks, dhidden, pass.batch);
  if (embedding_) {
    embedding_->backward(d, pass.tokens);
    pass.tokens = {};
    return {};
  }
  return d;
}

double StageModel::head_forward_input(Pass& pass, const Tensor& targets, float dloss,
                                    Tensor& dhidden) const {
  NUPIPE_CHECK(head_ != nullptr, "head_forward_input on a slice without the head");
  NUPIPE_CHECK(!pass.head_weights.x.defined(), "head_forward_input twice on one pass");
  return head_->forward_input(pass.hidden, targets, dloss, dhidden, pass.head_weights);
}

namespace {
// A tensor W reads, under MemTag::weight_inputs: the model's own retagged, a caller's copied.
void keep_for_weights(Tensor& t, bool callers) {
  if (!callers) {
    t.retag(MemTag::weight_inputs);
    return;
  }
  Tensor own = Tensor::empty(t.backend(), t.shape(), t.dtype(), MemTag::weight_inputs);
  if (t.bytes() > 0) t.backend().copy(own.data().ptr, t.data().ptr, t.bytes());
  t = own;
}
}  // namespace

Tensor StageModel::backward_input(Pass& pass, const Tensor& dhidden) const {
  NUPIPE_CHECK(!pass.weights_pending, "backward_input twice without backward_weight");
  // The slice's input is the caller's unless the embedding made it.
  const bool input_callers = !embedding_;
  // The head's input: the last block's output, or the slice's input when it has no block.
  if (pass.head_weights.x.defined()) {
    keep_for_weights(pass.head_weights.x, block_count() == 0 && input_callers);
  }
  pass.hidden = {};
  Tensor d = cfg_.llama() ? backward_input_blocks(llama_blocks_, pass.llama_blocks,
                                                  pass.llama_block_weights, dhidden, pass.batch,
                                                  input_callers)
                          : backward_input_blocks(blocks_, pass.blocks, pass.block_weights,
                                                  dhidden, pass.batch, input_callers);
  pass.weights_pending = true;
  if (embedding_) {
    pass.embedding_weights = {d, pass.tokens};
    keep_for_weights(pass.embedding_weights.dx, block_count() == 0);
    keep_for_weights(pass.embedding_weights.tokens, true);
    pass.tokens = {};
    return {};
  }
  return d;
}

void StageModel::backward_weight(Pass& pass) const {
  NUPIPE_CHECK(pass.weights_pending, "backward_weight without backward_input");
  if (pass.head_weights.x.defined()) {
    head_->backward_weight(pass.head_weights);
    pass.head_weights = {};
  }
  if (cfg_.llama()) backward_weight_blocks(llama_blocks_, pass.llama_block_weights);
  else backward_weight_blocks(blocks_, pass.block_weights);
  if (embedding_) {
    embedding_->backward_weight(pass.embedding_weights);
    pass.embedding_weights = {};
  }
  pass.weights_pending = false;
}

template <class B>
Tensor StageModel::backward_input_blocks(const std::vector<B>& blocks,
                                         std::vector<typename B::Saved>& saved,
                                         std::vector<typename B::WeightInputs>& weights, Tensor d,
                                         int64_t batch, bool input_callers) const {
  weights.assign(blocks.size(), {});
  for (size_t i = blocks.size(); i-- > 0;) {
    typename B::WeightInputs& w = weights[i];
    d = blocks[i].backward_input(d, batch, saved[i], w);
    keep_for_weights(B::kept_dout(w), i + 1 == blocks.size());  // dhidden, or block i + 1's dx
    // block i - 1's output, or the slice's input
    keep_for_weights(B::kept_input(w), i == 0 && input_callers);
  }
  saved.clear();
  return d;
}

template <class B>
void StageModel::backward_weight_blocks(const std::vector<B>& blocks,
                                        std::vector<typename B::WeightInputs>& weights) const {
  for (size_t i = blocks.size(); i-- > 0;) {
    blocks[i].backward_weight(weights[i]);
    weights[i] = {};
  }
  weights.clear();
}

double StageModel::forward_backward(const Tensor& tokens, const Tensor& targets, int64_t batch,
                                  float dloss) {
  Pass pass;
  forward(pass, tokens, batch);
  Tensor dhidden;
  const double loss = head_forward_backward(pass, targets, dloss, dhidden);
  backward(pass, dhidden);
  return loss;
}

double StageModel::loss_sum(const Tensor& tokens, const Tensor& targets, int64_t batch) {
  Pass pass;
  forward(pass, tokens, batch);
  return head_forward(pass, targets);
}

std::vector<float> StageModel::next_token_logits(const Tensor& tokens, int64_t n) const {
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
