// adamw.h: AdamW with decoupled weight decay over a ParamStore's flat buffers, or over one
// range of them (a ZeRO-1 shard). Decay is applied per tensor by its spec's `decay` flag
// (matrices and embeddings yes; biases, LayerNorm no), on whatever piece of it the range holds.
// The update runs on fp32 master weights: the store's parameters themselves when they are
// fp32; with bf16 parameters (runtime.precision = "bf16") a master copy of the range that this
// optimizer owns, sharded with its state, from which each step writes the bf16 compute copy.
#pragma once

#include <cstdint>

#include "optim/options.h"
#include "runtime/param_store.h"

namespace nupipe::optim {

class AdamW {
 public:
  // State for every parameter of the store (replicated data parallelism).
  AdamW(runtime::ParamStore& store, const AdamWOptions& options);
  // State for the flat range [begin, end) of the store's (padded) buffers only: a ZeRO-1
  // shard. Elements of the range that are padding have state but are never updated.
  AdamW(runtime::ParamStore& store, const AdamWOptions& options, int64_t begin, int64_t end);

  // One update with learning rate `lr` of the range's parameters from the store's
  // gradients; increments step().
  void step(float lr);
  // The same from `grads`, where grads[i] is the gradient of flat element begin() + i (the
  // reduce-scattered shard).
  void step(float lr, const float* grads);

  // The fp32 master weights of the range [begin(), end()).
  const runtime::Tensor& master() const { return master_; }
  runtime::Tensor& master() { return master_; }
  bool owns_master() const { return owns_master_; }
  // Writes the range of the store's parameters from the master weights (rounded to bf16; a
  // no-op when they are the same memory).
  void write_compute_copy();

  int64_t steps_taken() const { return t_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  const runtime::Tensor& exp_avg() const { return m_; }     // m[i]: flat element begin() + i
  const runtime::Tensor& exp_avg_sq() const { return v_; }
  // For a checkpoint's restore: the state tensors and the update count.
  runtime::Tensor& exp_avg() { return m_; }
  runtime::Tensor& exp_avg_sq() { return v_; }
  void set_steps_taken(int64_t t) { t_ = t; }

 private:
  runtime::ParamStore& store_;
  AdamWOptions opt_;
  int64_t begin_ = 0, end_ = 0;
  bool owns_master_ = false;
  runtime::Tensor master_, m_, v_;
  int64_t t_ = 0;
};

}  // namespace nupipe::optim
