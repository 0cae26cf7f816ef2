// stage_model.h: a model of either family (GPT-2, llama), or the slice of one a pipeline stage
// holds: blocks [lo, hi), plus the embedding if first, plus final norm, LM head and loss if last.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/layers/block.h"
#include "runtime/layers/embedding.h"
#include "runtime/layers/llama_block.h"
#include "runtime/layers/lm_head.h"
#include "runtime/param_store.h"

namespace nupipe::runtime {

struct StageSlice {
  int layer_begin = 0;
  int layer_end = 0;  // exclusive
  bool embedding = true;
  bool head = true;
  static StageSlice whole(const ModelConfig& cfg) { return {0, cfg.n_layer, true, true}; }
};

// Parameter specs of a slice, in a fixed order (embedding, blocks, head).
std::vector<TensorSpec> stage_specs(const ModelConfig& cfg, const StageSlice& slice);
// Per-layer cost descriptors of a slice, named "embedding", "blocks.i", "head".
std::vector<std::pair<std::string, LayerCost>> stage_costs(const ModelConfig& cfg,
                                                         const StageSlice& slice);
// One block's cost descriptor in the config's family (every block of a model costs the same).
LayerCost block_cost(const ModelConfig& cfg);

// The one model interface the pipeline executor, the cost model and the planner drive: what
// it computes depends on cfg.family (GPT-2's Block or llama's LlamaBlock), how it is driven
// does not.
class StageModel {
 public:
  // pad_to: the flat parameter/gradient buffers are padded to a multiple of it (ZeRO-1 shards).
  // recompute_blocks: the first that many blocks of the slice keep only their input from
  // forward to backward and recompute the rest in backward (activation recompute).
  StageModel(Backend& backend, const ModelConfig& cfg, StageSlice slice, int64_t pad_to = 1,
           int recompute_blocks = 0);
  StageModel(const StageModel&) = delete;
  StageModel& operator=(const StageModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const StageSlice& slice() const { return slice_; }
  int recompute_blocks() const { return recompute_blocks_; }
  ParamStore& params() { return store_; }
  const ParamStore& params() const { return store_; }
  Backend& backend() const { return store_.backend(); }

  // The activations one microbatch keeps between its forward and its backward, and, for a
  // backward in two passes, what its weight gradients read (MemTag::weight_inputs).
  struct Pass {
    int64_t batch = 0;
    Tensor tokens;  // when the slice has the embedding
    std::vector<Block::Saved> blocks;             // gpt2
    std::vector<LlamaBlock::Saved> llama_blocks;  // llama
    Tensor hidden;  // output of the slice's last block
    // From backward_input (the head's from head_forward_input) until backward_weight.
    std::vector<Block::WeightInputs> block_weights;
    std::vector<LlamaBlock::WeightInputs> llama_block_weights;
    Embedding::WeightInputs embedding_weights;
    LmHead::WeightInputs head_weights;  // head_weights.x defined: the head's W is pending
    bool weights_pending = false;       // backward_input ran, backward_weight not yet
  };

  // input: i32 tokens [B*T] with the embedding, else f32 hidden [B*T, C] from the previous
  // stage. Returns the slice's output hidden state (also kept in pass.hidden).
  Tensor forward(Pass& pass, const Tensor& input, int64_t batch) const;
  // Head slice only: loss sum over the pass's tokens, and the gradient of
  // `dloss * loss_sum` with respect to pass.hidden.
  double head_forward_backward(Pass& pass, const Tensor& targets, float dloss,
                               Tensor& dhidden) const;
  double head_forward(const Pass& pass, const Tensor& targets) const;
  // dhidden -> gradient w.r.t. the slice's input (undefined when the slice has the
  // embedding, whose gradient is accumulated instead). Releases the pass's activations.
  // (A head whose weight gradients head_forward_input deferred gets them here, first.)
  Tensor backward(Pass& pass, const Tensor& dhidden) const;

  // The backward in two passes, for zero-bubble schedules; B then W gives bitwise the
  // parameter gradients and d(input) of backward (and of head_forward_backward), microbatch
  // by microbatch in the order their W run.
  //
  // Head slice: the loss and dhidden as head_forward_backward, but the head's weight
  // gradients (LM head matrix, tied or not, and the final LayerNorm) wait for backward_weight,
  // which recomputes the logits a chunk at a time (the [tokens x vocab] logits are never
  // held; LmHead::forward_input). head_forward_backward still works with backward_input (the
  // head's gradients then come at once and nothing of it waits).
  double head_forward_input(Pass& pass, const Tensor& targets, float dloss,
                            Tensor& dhidden) const;
  // B: d(input of the slice) as backward returns it (undefined with the embedding), the
  // activations released as backward releases them (recomputing blocks rerun their forward
  // first), no parameter gradient. What W reads stays in `pass` under MemTag::weight_inputs,
  // stage_costs(...)'s weight_bytes(tokens) summed over the slice to the byte (the head's only
  // after head_forward_input). Tensors it was handed (dhidden, the slice's input, the tokens,
  // the targets) are copied into that tag, never retagged, so the caller's stay its own.
  Tensor backward_input(Pass& pass, const Tensor& dhidden) const;
  // W: every parameter gradient of the microbatch accumulated into the store (the head's
  // first, then the blocks', then the embedding's: a tied token table receives them in the
  // fused order); releases what B kept.
  void backward_weight(Pass& pass) const;

  // Whole model in one slice: forward, loss, backward for one microbatch. Returns loss sum.
  double forward_backward(const Tensor& tokens, const Tensor& targets, int64_t batch,
                          float dloss);
  double loss_sum(const Tensor& tokens, const Tensor& targets, int64_t batch);
  // Whole model: the logits [V] (host, fp32) of the token that follows tokens[0, n), where
  // `tokens` is one sequence of seq_len i32 tokens of which only the first n (1..seq_len)
  // matter: attention is causal, so what follows position n - 1 cannot change its output.
  std::vector<float> next_token_logits(const Tensor& tokens, int64_t n) const;

 private:
  ModelConfig cfg_;
  StageSlice slice_;
  int recompute_blocks_ = 0;
  ParamStore store_;
  // The blocks' passes, one template for both families (stage_model.cpp).
  template <class B>
  Tensor forward_blocks(const std::vector<B>& blocks, std::vector<typename B::Saved>& saved,
                        Tensor x, int64_t batch) const;
  template <class B>
  Tensor backward_blocks(const std::vector<B>& blocks, std::vector<typename B::Saved>& saved,
                         Tensor d, int64_t batch) const;
  template <class B>
  Tensor backward_input_blocks(const std::vector<B>& blocks,
                               std::vector<typename B::Saved>& saved,
                               std::vector<typename B::WeightInputs>& weights, Tensor d,
                               int64_t batch, bool input_callers) const;
  template <class B>
  void backward_weight_blocks(const std::vector<B>& blocks,
                              std::vector<typename B::WeightInputs>& weights) const;
  size_t block_count() const { return blocks_.size() + llama_blocks_.size(); }

  std::unique_ptr<Embedding> embedding_;
  std::vector<Block> blocks_;             // gpt2
  std::vector<LlamaBlock> llama_blocks_;  // llama
  std::unique_ptr<LmHead> head_;
};

}  // namespace nupipe::runtime
