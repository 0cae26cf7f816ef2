// adamw.cpp: AdamW update, one backend call per tensor piece of the range (its own decay flag).
#include "optim/adamw.h"

#include <cmath>

#include "runtime/check.h"

namespace nupipe::optim {

using runtime::DType;
using runtime::MemTag;
using runtime::Tensor;

AdamW::AdamW(runtime::ParamStore& store, const AdamWOptions& options)
    : AdamW(store, options, 0, store.numel()) {}

AdamW::AdamW(runtime::ParamStore& store, const AdamWOptions& options, int64_t begin,
             int64_t end)
    : store_(store),
      opt_(options),
      begin_(begin),
      end_(end),
      m_(Tensor::zeros(store.backend(), {end - begin}, DType::f32, MemTag::optimizer)),
      v_(Tensor::zeros(store.backend(), {end - begin}, DType::f32, MemTag::optimizer)) {
  NUPIPE_CHECK(0 <= begin && begin <= end && end <= store.padded_numel(),
               "AdamW range [" + std::to_string(begin) + ", " + std::to_string(end) +
                   ") outside the flat buffer of " + std::to_string(store.padded_numel()));
}

void AdamW::step(float lr) { step(lr, store_.flat_grads().f32() + begin_); }

void AdamW::step(float lr, const float* grads) {
  ++t_;
  const float c1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(t_));
  const float c2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(t_));
  runtime::Backend& be = store_.backend();
  for (const runtime::SpecPiece& p : store_.pieces(begin_, end_)) {
    const int64_t local = p.begin - begin_;
    be.adamw(store_.flat_params().f32() + p.begin, grads + local, m_.f32() + local,
             v_.f32() + local, p.numel(), lr, opt_.beta1, opt_.beta2, opt_.eps,
             p.spec->decay ? opt_.weight_decay : 0.0f, c1, c2);
  }
}

}  // namespace nupipe::optim
