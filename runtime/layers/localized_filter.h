// localized_filter.h: Yuan 2.0's localized filtering (LFA), f = RMSNorm(conv2(conv1(h)) + h),
// conv1 (C -> C/2) and conv2 (C/2 -> C) causal convolutions of width 2 along each sequence with
// biases (position t sees t - 1 and t; position -1 is zero for both), the RMSNorm's epsilon
// 1e-6 as in Yuan's implementation; a parameter view into a ParamStore, with its backward
// fused or in two passes (input, weight).
#pragma once

#include <string>
#include <vector>

#include "runtime/layers/layer_cost.h"
#include "runtime/layers/rms_norm.h"
#include "runtime/model_config.h"

namespace nupipe::runtime {

// One causal width-2 convolution along the sequence, y[t] = W0 x[t-1] + W1 x[t] + b, as GEMMs:
// weight [2, out, in] (tap 0 multiplies the previous position, tap 1 the current one), bias
// [out]. Hugging Face's Conv2d weight [out, in, 2, 1] is the same numbers, taps last.
class CausalConv2 {
 public:
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t in,
                        int64_t out, float init_std);
  CausalConv2(const ParamStore& store, const std::string& prefix, int64_t seq_len);

  // y[N, out] = beta * y + conv(x[N, in]), N = B * T rows of B whole sequences.
  void forward(const Tensor& x, Tensor& y, float beta) const;
  // dx (+)= the input gradient of dy.
  void backward_input(const Tensor& dy, Tensor& dx, bool accumulate) const;
  // dW += the weight gradient of dy and x, db += colsum(dy).
  void backward_weight(const Tensor& dy, const Tensor& x) const;

 private:
  Tensor w_, b_, dw_, db_;
  int64_t in_, out_, T_;
};

class LocalizedFilter {
 public:
  static constexpr float kNormEps = 1e-6f;  // Yuan's LocalizedFiltering RMSNorm
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix,
                        const ModelConfig& cfg);
  // Parameters and flops of the filter. Its bytes are composed by GroupedQueryAttention::cost,
  // which runs it between buffers of its own.
  static LayerCost cost(const ModelConfig& cfg);
  // Bytes per token the forward keeps (o1, z, f and z's rstd) and what B keeps for W beyond
  // them (dz, do1 and df).
  static int64_t activation_bytes_per_token(const ModelConfig& cfg);
  static int64_t weight_extra_bytes_per_token(const ModelConfig& cfg);
  LocalizedFilter(const ParamStore& store, const std::string& prefix, const ModelConfig& cfg);

  struct Saved {
    Tensor o1;            // conv1(h) [N, C/2]
    Tensor z;             // conv2(o1) + h [N, C], the norm's input
    RmsNorm::Saved norm;  // f = norm(z) [N, C] and rstd
  };
  // The filtered input f is saved.norm.out (MemTag::activations).
  void forward(const Tensor& h, Saved& saved) const;

  // dh += the gradient through the filter of df (the gradient of f), h the filter's input.
  void backward(const Tensor& df, const Tensor& h, const Saved& saved, Tensor& dh) const;
  // As backward in two passes: B keeps in `w` what W reads (h and df the caller's, not
  // retagged; o1, z, dz and do1 retagged MemTag::weight_inputs); W accumulates the weight
  // gradients, bitwise those of backward.
  struct WeightInputs {
    RmsNorm::WeightInputs norm;  // z, df, rstd
    Tensor o1, dz, h, do1;       // conv2's x and dy, conv1's x and dy
  };
  void backward_input(const Tensor& df, const Tensor& h, const Saved& saved, Tensor& dh,
                      WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;

 private:
  CausalConv2 conv1_, conv2_;
  RmsNorm norm_;
  int64_t C_;
};

}  // namespace nupipe::runtime
