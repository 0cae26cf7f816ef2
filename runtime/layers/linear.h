// linear.h: y = x W^T + b with W stored [out, in] (the nn.Linear convention; b optional), and
// the small LayerNorm wrapper; both are parameter views into a ParamStore.
#pragma once

#include <string>
#include <vector>

#include "runtime/param_store.h"

namespace nupipe::runtime {

class Linear {
 public:
  // bias false: no `.bias` tensor (llama's projections); the layer then has none.
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t in,
                        int64_t out, float init_std, bool bias = true);
  Linear(const ParamStore& store, const std::string& prefix);

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  // y[N,out] = beta * y + x[N,in] W^T + b
  void forward(const Tensor& x, Tensor& y, float beta = 0.0f) const;
  // y = x W^T + b (the pre-activation) and act = gelu(y), in one Backend::linear_forward.
  void forward_gelu(const Tensor& x, Tensor& y, Tensor& act) const;
  // dW += dy^T x, db += colsum(dy) (with a bias); when dx is given, dx = dy W (+ dx if accumulate).
  void backward(const Tensor& dy, const Tensor& x, Tensor* dx, bool accumulate = false) const;
  // The same in two passes: B, dx = dy W (+ dx if accumulate); W, dW += dy^T x and
  // db += colsum(dy), the very calls backward makes.
  void backward_input(const Tensor& dy, Tensor& dx, bool accumulate = false) const;
  void backward_weight(const Tensor& dy, const Tensor& x) const;

  // The same for the output rows [row0, row0 + rows) of a layer without bias, on a y (dy) of
  // row stride ldy, y and dy pointing at those rows' first column: y = x W[rows]^T;
  // dx (+)= dy W[rows]; dW[rows] += dy^T x. (Yuan's attention
  // projects q and k from the filtered input and v from the unfiltered one.)
  void forward_rows(const Tensor& x, int64_t row0, int64_t rows, DevPtr y, int64_t ldy) const;
  void backward_input_rows(ConstDevPtr dy, int64_t ldy, int64_t row0, int64_t rows, Tensor& dx,
                           bool accumulate) const;
  void backward_weight_rows(ConstDevPtr dy, int64_t ldy, int64_t row0, int64_t rows,
                            const Tensor& x) const;

  // What backward_weight reads, kept from B until W (MemTag::weight_inputs).
  struct WeightInputs {
    Tensor x, dy;
  };
  void backward_weight(const WeightInputs& w) const { backward_weight(w.dy, w.x); }

 private:
  Tensor w_, b_, dw_, db_;
  int64_t in_, out_;
};

class LayerNorm {
 public:
  static void add_specs(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t C);
  LayerNorm(const ParamStore& store, const std::string& prefix, float eps);

  struct Saved { Tensor out, mean, rstd; };
  // out/mean/rstd allocated under `tag` (activations when kept for backward).
  Saved forward(const Tensor& x, MemTag tag = MemTag::activations) const;
  // Returns dx (workspace); accumulates dw, db.
  Tensor backward(const Tensor& dout, const Tensor& x, const Saved& saved) const;

  // What backward_weight reads: the input, its statistics and the output gradient.
  struct WeightInputs {
    Tensor x, dout, mean, rstd;
  };
  // B: dx only (workspace). W: dw, db only. Together bitwise backward's results.
  Tensor backward_input(const Tensor& dout, const Tensor& x, const Saved& saved) const;
  // B keeping in `w` what W reads: x and dout (the caller's, not retagged) and the statistics
  // (retagged MemTag::weight_inputs).
  Tensor backward_input(const Tensor& dout, const Tensor& x, const Saved& saved,
                        WeightInputs& w) const;
  void backward_weight(const WeightInputs& w) const;
  // Bytes per token W holds: x and dout [C] of `elem` bytes, mean and rstd in fp32.
  static int64_t weight_bytes_per_token(int64_t C, int64_t elem) { return 2 * elem * C + 8; }

 private:
  Tensor w_, b_, dw_, db_;
  float eps_;
};

}  // namespace nupipe::runtime
