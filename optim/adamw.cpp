// adamw.cpp: AdamW update, one backend call per tensor (its own decay flag).
#include "optim/adamw.h"

#include <cmath>

namespace nupipe::optim {

using runtime::DType;
using runtime::MemTag;
using runtime::Tensor;

AdamW::AdamW(runtime::ParamStore& store, const AdamWOptions& options)
    : store_(store),
      opt_(options),
      m_(Tensor::zeros(store.backend(), {store.numel()}, DType::f32, MemTag::optimizer)),
      v_(Tensor::zeros(store.backend(), {store.numel()}, DType::f32, MemTag::optimizer)) {}

void AdamW::step(float lr) {
  ++t_;
  const float c1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(t_));
  const float c2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(t_));
  runtime::Backend& be = store_.backend();
  for (const runtime::TensorSpec& s : store_.specs()) {
    be.adamw(store_.flat_params().f32() + s.offset, store_.flat_grads().f32() + s.offset,
             m_.f32() + s.offset, v_.f32() + s.offset, s.numel(), lr, opt_.beta1, opt_.beta2,
             opt_.eps, s.decay ? opt_.weight_decay : 0.0f, c1, c2);
  }
}

}  // namespace nupipe::optim
