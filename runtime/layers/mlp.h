// mlp.h: the GPT-2 feed-forward sublayer, proj(gelu_tanh(fc(x))) with a 4x hidden width,
// and its hand-written backward.
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

class Mlp {
 public:
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                        const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  Mlp(const ParamStore& store, const std::string& prefix);

  struct Saved { Tensor fc, act; };  // pre- and post-GELU [N, 4C]
  // out += proj(gelu(fc(x)))
  void forward(const Tensor& x, Tensor& out, Saved& saved) const;
  Tensor backward(const Tensor& dout, const Tensor& x, const Saved& saved) const;

 private:
  Linear fc_, proj_;
};

}  // namespace nupipe::runtime
