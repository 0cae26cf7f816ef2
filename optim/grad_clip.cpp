// grad_clip.cpp: gradient norm (whole store or one shard) and clipping.
#include "optim/grad_clip.h"

#include <algorithm>

namespace nupipe::optim {

double grad_sum_squares(const runtime::ParamStore& store) {
  const runtime::Tensor& g = store.flat_grads();
  return store.backend().sum_squares(g.f32(), g.numel());
}

double grad_sum_squares(const runtime::ParamStore& store, const float* grads, int64_t begin,
                        int64_t end, const std::vector<std::string>& skip) {
  // Maximal runs of counted tensors, so that with nothing skipped this is one call.
  double sum = 0.0;
  int64_t run_begin = -1, run_end = -1;
  auto flush = [&] {
    if (run_begin < run_end) {
      sum += store.backend().sum_squares(grads + (run_begin - begin), run_end - run_begin);
    }
    run_begin = run_end = -1;
  };
  for (const runtime::SpecPiece& p : store.pieces(begin, end)) {
    if (std::find(skip.begin(), skip.end(), p.spec->name) != skip.end()) {
      flush();
      continue;
    }
    if (run_end != p.begin) {
      flush();
      run_begin = p.begin;
    }
    run_end = p.end;
  }
  flush();
  return sum;
}

float clip_to_norm(runtime::ParamStore& store, double global_norm, const ClipOptions& options) {
  const runtime::Tensor& g = store.flat_grads();
  return clip_to_norm(store.backend(), g.f32(), g.numel(), global_norm, options);
}

float clip_to_norm(runtime::Backend& backend, float* grads, int64_t n, double global_norm,
                   const ClipOptions& options) {
  if (options.max_norm <= 0.0f || global_norm <= options.max_norm) return 1.0f;
  const float factor = static_cast<float>(options.max_norm / (global_norm + 1e-6));
  backend.scale(grads, factor, n);
  return factor;
}

}  // namespace nupipe::optim
