// swiglu_mlp.h: llama's feed-forward sublayer, down(silu(gate(x)) * up(x)), bias-free, with
// gate and up as one [2F, C] projection, and its hand-written backward.
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/linear.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

class SwiGluMlp {
 public:
  // gate_up.weight [2F, C]: rows [0, F) are Hugging Face's gate_proj, [F, 2F) its up_proj;
  // down.weight [C, F] (down_proj). F = cfg.ffn_width().
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                        const ModelConfig& cfg);
  static LayerCost cost(const ModelConfig& cfg);
  SwiGluMlp(const ParamStore& store, const std::string& prefix);

  struct Saved { Tensor gate_up, h; };  // [N, 2F] and silu(gate) * up [N, F]
  // out += down(swiglu(gate_up(x)))
  void forward(const Tensor& x, Tensor& out, Saved& saved) const;
  Tensor backward(const Tensor& dout, const Tensor& x, const Saved& saved) const;

  // The backward in two passes. B returns dx and keeps in `w` gate_up's and down's inputs and
  // output gradients: x and dout the caller's (kept, not retagged), h and d(gate_up) retagged
  // MemTag::weight_inputs. W: the weight gradients, bitwise those of backward.
  struct WeightInputs {
    Linear::WeightInputs gate_up, down;
  };
  Tensor backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;

 private:
  Tensor backward_impl(const Tensor& dout, const Tensor& x, const Saved& s,
                       WeightInputs* w) const;
  Linear gate_up_, down_;
};

}  // namespace nupipe::runtime
