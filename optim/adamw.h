// adamw.h: AdamW with decoupled weight decay over a ParamStore's flat buffers. Decay is
// applied per tensor by its spec's `decay` flag (matrices and embeddings yes; biases, LayerNorm no).
#pragma once

#include <cstdint>

#include "optim/options.h"
#include "runtime/param_store.h"

namespace nupipe::optim {

class AdamW {
 public:
  AdamW(runtime::ParamStore& store, const AdamWOptions& options);

  // One update with learning rate `lr` from the store's gradients; increments step().
  void step(float lr);
  int64_t steps_taken() const { return t_; }
  const runtime::Tensor& exp_avg() const { return m_; }
  const runtime::Tensor& exp_avg_sq() const { return v_; }

 private:
  runtime::ParamStore& store_;
  AdamWOptions opt_;
  runtime::Tensor m_, v_;  // flat, aligned with the store's parameter buffer
  int64_t t_ = 0;
};

}  // namespace nupipe::optim
