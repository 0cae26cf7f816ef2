// rms_norm.h: RMSNorm (llama), y = x / sqrt(mean(x^2) + eps) * w with fp32 statistics, a
// parameter view into a ParamStore, with its backward in two passes (input, weight).
#pragma once

#include <string>
#include <vector>

#include "runtime/param_store.h"

namespace nupipe::runtime {

class RmsNorm {
 public:
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t C);
  RmsNorm(const ParamStore& store, const std::string& prefix, float eps);

  struct Saved { Tensor out, rstd; };
  // out and rstd [N] (fp32) allocated under `tag` (activations when kept for backward).
  Saved forward(const Tensor& x, MemTag tag = MemTag::activations) const;
  // dx (workspace); accumulates dw. The weight pass, then the input pass: B then W is it
  // bit for bit.
  Tensor backward(const Tensor& dout, const Tensor& x, const Saved& saved) const;

  // What backward_weight reads: the input, its rstd and the output gradient.
  struct WeightInputs {
    Tensor x, dout, rstd;
  };
  // B: dx only, keeping in `w` x and dout (the caller's, not retagged) and rstd (retagged
  // MemTag::weight_inputs). W: dw only.
  Tensor backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;
  // Bytes per token W holds: x and dout [C] of `elem` bytes, rstd in fp32.
  static int64_t weight_bytes_per_token(int64_t C, int64_t elem) { return 2 * elem * C + 4; }

 private:
  Tensor input_gradient(const Tensor& dout, const Tensor& x, const Saved& saved) const;
  Tensor w_, dw_;
  float eps_;
};

}  // namespace nupipe::runtime
