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
      owns_master_(store.dtype() != DType::f32),
      m_(Tensor::zeros(store.backend(), {end - begin}, DType::f32, MemTag::optimizer)),
      v_(Tensor::zeros(store.backend(), {end - begin}, DType::f32, MemTag::optimizer)) {
  NUPIPE_CHECK(0 <= begin && begin <= end && end <= store.padded_numel(),
               "AdamW range [" + std::to_string(begin) + ", " + std::to_string(end) +
                   ") outside the flat buffer of " + std::to_string(store.padded_numel()));
  if (!owns_master_) {
    master_ = store.flat_params().view(begin, {end - begin});
  } else {  // from the compute copy; initialisation or a checkpoint then sets the exact values
    master_ = Tensor::empty(store.backend(), {end - begin}, DType::f32, MemTag::optimizer);
    store.backend().convert(master_.data(), store.flat_params().data() + begin, end - begin);
  }
}

void AdamW::write_compute_copy() {
  if (!owns_master_) return;
  store_.backend().convert(store_.flat_params().data() + begin_, master_.data(), end_ - begin_);
}

void AdamW::step(float lr) { step(lr, store_.flat_grads().f32() + begin_); }

void AdamW::step(float lr, const float* grads) {
  ++t_;
  const float c1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(t_));
  const float c2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(t_));
  runtime::Backend& be = store_.backend();
  for (const runtime::SpecPiece& p : store_.pieces(begin_, end_)) {
    const int64_t local = p.begin - begin_;
    be.adamw(master_.f32() + local, grads + local, m_.f32() + local,
             v_.f32() + local, p.numel(), lr, opt_.beta1, opt_.beta2, opt_.eps,
             p.spec->decay ? opt_.weight_decay : 0.0f, c1, c2);
  }
  write_compute_copy();
}

}  // namespace nupipe::optim
