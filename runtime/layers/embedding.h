// embedding.h: token + learned position embedding, x[b, t] = wte[token] + wpe[t] (llama: the
// token table alone, positions being rotary), and its backward (scatter-add into the tables:
// the weight gradient; it has no input gradient).
#pragma once

#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/model_config.h"
#include "runtime/param_store.h"

namespace nupipe::runtime {

class Embedding {
 public:
  static constexpr const char* kTokenTable = "embed.wte.weight";
  static constexpr const char* kPositionTable = "embed.wpe.weight";
  static void add_specs(std::vector<TensorSpec>& specs, const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  Embedding(const ParamStore& store, const ModelConfig& cfg);

  // tokens: i32 [B*T] -> x [B*T, C] (activations)
  Tensor forward(const Tensor& tokens) const;
  void backward(const Tensor& dx, const Tensor& tokens) const;
  // The table gradients are all it has: in a backward split in two passes they are W, and
  // what W reads (the gradient of its output, the tokens) is kept from B until then.
  struct WeightInputs {
    Tensor dx, tokens;
  };
  void backward_weight(const WeightInputs& w) const { backward(w.dx, w.tokens); }

 private:
  Tensor wte_, wpe_, dwte_, dwpe_;
  int64_t T_, C_;
};

}  // namespace nupipe::runtime
