// grad_clip.cpp: gradient norm and clipping.
#include "optim/grad_clip.h"

namespace nupipe::optim {

double grad_sum_squares(const runtime::ParamStore& store) {
  const runtime::Tensor& g = store.flat_grads();
  return store.backend().sum_squares(g.f32(), g.numel());
}

float clip_to_norm(runtime::ParamStore& store, double global_norm, const ClipOptions& options) {
  if (options.max_norm <= 0.0f || global_norm <= options.max_norm) return 1.0f;
  const float factor = static_cast<float>(options.max_norm / (global_norm + 1e-6));
  const runtime::Tensor& g = store.flat_grads();
  store.backend().scale(g.f32(), factor, g.numel());
  return factor;
}

}  // namespace nupipe::optim
