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

  // The backward in two passes. B returns dx (workspace) and keeps in `w` what W reads: fc's
  // and proj's inputs and output gradients; x and dout are the caller's (kept, not retagged),
  // the post-GELU activation and d(fc) are retagged MemTag::weight_inputs. W accumulates the
  // parameter gradients, bitwise those of backward.
  struct WeightInputs {
    Linear::WeightInputs fc, proj;
  };
  Tensor backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;

 private:
  Tensor backward_impl(const Tensor& dout, const Tensor& x, const Saved& s,
                       WeightInputs* w) const;
  Linear fc_, proj_;
};

}  // namespace nupipe::runtime
