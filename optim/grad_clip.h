// grad_clip.h: global gradient-norm clipping. The norm is the square root of a sum of
// squares that callers may add to (other stages, other shards) before deciding.
#pragma once

#include "optim/options.h"
#include "runtime/param_store.h"

namespace nupipe::optim {

// Sum of squares of this store's gradients (in double).
double grad_sum_squares(const runtime::ParamStore& store);
// Scales the store's gradients so the global norm is at most max_norm (0: no clipping).
// Returns the factor applied (1 when the norm is within bounds).
float clip_to_norm(runtime::ParamStore& store, double global_norm, const ClipOptions& options);

}  // namespace nupipe::optim
