// grad_check.cpp: directional finite-difference gradient checks.
#include "tests/unit/grad_check.h"

#include <cmath>
#include <random>

namespace nupipe::testing {

std::vector<float> random_values(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * (static_cast<float>(rng() >> 40) / static_cast<float>(1 << 23) - 1.0f);
  return v;
}

double weighted_sum(const runtime::Tensor& t, const std::vector<float>& weights) {
  const std::vector<float> h = runtime::to_host(t);
  double s = 0.0;
  for (size_t i = 0; i < h.size(); ++i) s += static_cast<double>(h[i]) * weights.at(i);
  return s;
}

std::vector<GradCheckResult> check_gradients(
    const std::function<double()>& objective,
    const std::function<std::vector<std::vector<float>>()>& analytic,
    const std::vector<GradSlot>& slots, double eps, int directions, uint64_t seed) {
  const std::vector<std::vector<float>> grads = analytic();
  std::vector<GradCheckResult> results;
  for (size_t s = 0; s < slots.size(); ++s) {
    runtime::Tensor value = slots[s].value;
    const std::vector<float> original = runtime::to_host(value);
    for (int d = 0; d < directions; ++d) {
      const std::vector<float> v = random_values(original.size(), seed + 1000 * s + d);
      double ana = 0.0;
      for (size_t i = 0; i < v.size(); ++i) ana += static_cast<double>(grads[s].at(i)) * v[i];
      std::vector<float> x = original;
      for (size_t i = 0; i < x.size(); ++i) x[i] = original[i] + static_cast<float>(eps) * v[i];
      runtime::from_host(value, x);
      const double plus = objective();
      for (size_t i = 0; i < x.size(); ++i) x[i] = original[i] - static_cast<float>(eps) * v[i];
      runtime::from_host(value, x);
      const double minus = objective();
      runtime::from_host(value, original);
      const double num = (plus - minus) / (2.0 * eps);
      const double denom = std::max({std::abs(ana), std::abs(num), 1e-6});
      results.push_back({slots[s].name, ana, num, std::abs(ana - num) / denom});
    }
  }
  return results;
}

Batch fixed_batch(runtime::Backend& be, int64_t n, int vocab) {
  std::vector<int32_t> tok(n), tgt(n);
  for (int64_t i = 0; i < n; ++i) {
    tok[i] = static_cast<int32_t>((i * 13 + 5) % vocab);
    tgt[i] = static_cast<int32_t>((i * 29 + 1) % vocab);
  }
  Batch b{runtime::Tensor::empty(be, {n}, runtime::DType::i32, runtime::MemTag::workspace),
          runtime::Tensor::empty(be, {n}, runtime::DType::i32, runtime::MemTag::workspace)};
  runtime::from_host(b.tokens, tok);
  runtime::from_host(b.targets, tgt);
  return b;
}

}  // namespace nupipe::testing
