// grad_clip.h: global gradient-norm clipping. The norm is the square root of a sum of
// squares that callers may add to (other stages, other shards) before deciding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "optim/options.h"
#include "runtime/param_store.h"

namespace nupipe::optim {

// Sum of squares of this store's gradients (in double).
double grad_sum_squares(const runtime::ParamStore& store);
// Sum of squares of the flat gradient range [begin, end) held in `grads` (grads[i] is flat
// element begin + i: a ZeRO-1 shard), leaving out the pieces of the tensors named in `skip`
// (a tied table whose other copy another stage counts). Padding is zero and is not read.
double grad_sum_squares(const runtime::ParamStore& store, const float* grads, int64_t begin,
                        int64_t end, const std::vector<std::string>& skip = {});
// Scales the store's gradients so the global norm is at most max_norm (0: no clipping).
// Returns the factor applied (1 when the norm is within bounds).
float clip_to_norm(runtime::ParamStore& store, double global_norm, const ClipOptions& options);
// The same for n gradient elements at `grads` (this rank's shard).
float clip_to_norm(runtime::Backend& backend, float* grads, int64_t n, double global_norm,
                   const ClipOptions& options);

}  // namespace nupipe::optim
