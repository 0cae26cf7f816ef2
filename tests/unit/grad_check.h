// grad_check.h: central finite-difference checks of hand-written backward passes in fp32,
// along random directions (see the tolerance note in test_layers.cpp).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/backend.h"

namespace nupipe::testing {

struct GradSlot {
  std::string name;
  runtime::Tensor value;  // perturbed in place (and restored)
};

struct GradCheckResult {
  std::string name;
  double analytic = 0.0, numeric = 0.0, rel_error = 0.0;
};

// `objective` runs the forward and returns a scalar (in double). `analytic` runs forward
// and backward and returns, per slot, the gradient of the objective (host copy).
// For each slot and each of `directions` random unit-variance directions v, compares
// <g, v> with (f(x + eps v) - f(x - eps v)) / (2 eps).
std::vector<GradCheckResult> check_gradients(
    const std::function<double()>& objective,
    const std::function<std::vector<std::vector<float>>()>& analytic,
    const std::vector<GradSlot>& slots, double eps, int directions = 3, uint64_t seed = 7);

// Fixed pseudo-random values in [-1, 1) (host), for inputs, weights and output probes.
std::vector<float> random_values(size_t n, uint64_t seed, float scale = 1.0f);
double weighted_sum(const runtime::Tensor& t, const std::vector<float>& weights);

// A fixed batch of n token ids and targets in [0, vocab) on `be` (i32, workspace tag), the
// same on every backend, for whole-model comparisons.
struct Batch {
  runtime::Tensor tokens, targets;
};
Batch fixed_batch(runtime::Backend& be, int64_t n, int vocab);

}  // namespace nupipe::testing
