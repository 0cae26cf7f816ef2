// test_optim.cpp: AdamW against a scalar re-derivation of PyTorch's update, decay flags, its
// cpu kernel's rounding wherever a range starts, the squared norm's fixed order, the LR
// schedule's shape and global-norm clipping.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <omp.h>
#include <random>

#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/cpu_kernels.h"

namespace nupipe::optim {
namespace {

using namespace runtime;

TEST(AdamW, MatchesReferenceUpdateAndRespectsDecayFlags) {
  CpuBackend be;
  ParamStore store(be, {{"w", {3}, Init::ones, 0.0f, true}, {"b", {2}, Init::ones, 0.0f, false}});
  store.initialize(0);
  AdamWOptions opt;
  opt.lr = 0.1f;
  opt.weight_decay = 0.5f;
  AdamW adam(store, opt);
  const std::vector<float> g = {0.5f, -1.0f, 2.0f, 0.5f, -1.0f};
  double p_ref[5] = {1, 1, 1, 1, 1}, m[5] = {}, v[5] = {};
  for (int t = 1; t <= 3; ++t) {
    Tensor grads = store.flat_grads();
    from_host(grads, g);
    adam.step(opt.lr);
    for (int i = 0; i < 5; ++i) {
      const double wd = i < 3 ? opt.weight_decay : 0.0;
      p_ref[i] *= 1.0 - opt.lr * wd;
      m[i] = opt.beta1 * m[i] + (1 - opt.beta1) * g[i];
      v[i] = opt.beta2 * v[i] + (1 - opt.beta2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(opt.beta1, t));
      const double vhat = v[i] / (1 - std::pow(opt.beta2, t));
      p_ref[i] -= opt.lr * mhat / (std::sqrt(vhat) + opt.eps);
    }
  }
  const auto p = to_host(store.flat_params());
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(p[i], p_ref[i], 1e-5) << i;
  EXPECT_EQ(adam.steps_taken(), 3);
  EXPECT_EQ(be.memory().current(MemTag::optimizer), 2 * 5 * 4);
}

// Sets OpenMP's thread count for the kernels called directly here, and puts the process's
// back at the end of the test.
class OmpThreads {
 public:
  OmpThreads() : saved_(omp_get_max_threads()) {}
  ~OmpThreads() { omp_set_num_threads(saved_); }
  void set(int threads) const { omp_set_num_threads(threads); }

 private:
  int saved_;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

// The cpu kernel updates in vector lanes with a scalar remainder: every element must round as
// the scalar definition does (one fma per multiply-add), so that its update does not depend on
// where the call's range starts (a ZeRO-1 shard, a stage's tensor piece) or on the threads.
TEST(AdamW, TheCpuKernelRoundsEveryElementAlikeWhereverItsRangeStarts) {
  const int64_t n = 1003;
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 1e-2f);
  std::vector<float> p0(n), g(n), m0(n), v0(n);
  for (int64_t i = 0; i < n; ++i) {
    p0[i] = d(rng);
    g[i] = d(rng) * (i % 5 == 0 ? 1e-3f : 1.0f);
    m0[i] = 0.1f * d(rng);
    v0[i] = 1e-4f * std::abs(d(rng));
  }
  const float lr = 6e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  const float c1 = 1.0f - b1 * b1, c2 = 1.0f - b2 * b2;
  // The definition, element by element.
  std::vector<float> pr = p0, mr = m0, vr = v0;
  const float step = lr / c1, inv_sqrt_c2 = 1.0f / std::sqrt(c2), decay = 1.0f - lr * wd;
  for (int64_t i = 0; i < n; ++i) {
    mr[i] = std::fma(b1, mr[i], (1.0f - b1) * g[i]);
    vr[i] = std::fma(b2, vr[i], ((1.0f - b2) * g[i]) * g[i]);
    const float update = (step * mr[i]) / std::fma(std::sqrt(vr[i]), inv_sqrt_c2, eps);
    pr[i] = std::fma(pr[i], decay, -update);
  }
  const OmpThreads omp;
  for (int threads : {1, 2}) {
    omp.set(threads);
    // One call, and calls over ranges starting at odd offsets.
    for (int64_t piece : {n, int64_t{1}, int64_t{7}, int64_t{100}}) {
      std::vector<float> p = p0, m = m0, v = v0;
      for (int64_t at = 0; at < n; at += piece) {
        const int64_t len = std::min(piece, n - at);
        cpu::adamw(p.data() + at, g.data() + at, m.data() + at, v.data() + at, len, lr, b1, b2,
                   eps, wd, c1, c2);
      }
      EXPECT_TRUE(same_bits(p, pr)) << threads << " threads, pieces of " << piece;
      EXPECT_TRUE(same_bits(m, mr) && same_bits(v, vr)) << threads << " threads, " << piece;
    }
  }
}

// The squared gradient norm sums in a fixed order: the same bits on any thread count, and
// within double rounding of the exact sum.
TEST(GradNorm, SumOfSquaresIsTheSameOnAnyThreadCount) {
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const OmpThreads omp;
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{1000},
                    int64_t{123457}}) {
    std::vector<float> x(n);
    long double exact = 0.0L;
    for (float& v : x) {
      v = d(rng);
      exact += static_cast<long double>(v) * v;
    }
    omp.set(1);
    const double one = cpu::sum_squares(x.data(), n);
    for (int threads : {2, 3, 8}) {
      omp.set(threads);
      const double many = cpu::sum_squares(x.data(), n);
      EXPECT_EQ(std::memcmp(&one, &many, sizeof one), 0) << n << " elements, " << threads;
    }
    EXPECT_NEAR(one, static_cast<double>(exact), 1e-14 * static_cast<double>(exact) + 1e-300)
        << n << " elements";
  }
}

TEST(LrSchedule, WarmupThenCosineToFloor) {
  LrScheduleOptions o;
  o.warmup_steps = 10;
  o.min_lr_ratio = 0.1f;
  o.total_steps = 110;
  EXPECT_FLOAT_EQ(learning_rate(o, 1.0f, 0), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate(o, 1.0f, 9), 1.0f);
  EXPECT_FLOAT_EQ(learning_rate(o, 1.0f, 10), 1.0f);
  EXPECT_NEAR(learning_rate(o, 1.0f, 10 + 99 / 2.0), 0.55f, 0.01f);
  EXPECT_FLOAT_EQ(learning_rate(o, 1.0f, 109), 0.1f);
  for (int s = 11; s < 110; ++s) EXPECT_LE(learning_rate(o, 1.0f, s), learning_rate(o, 1.0f, s - 1));
}

TEST(GradClip, ScalesToMaxNormOnlyWhenAbove) {
  CpuBackend be;
  ParamStore store(be, {{"w", {2}, Init::zeros, 0.0f, true}});
  Tensor g = store.flat_grads();
  from_host(g, std::vector<float>{3.0f, 4.0f});
  const double norm = std::sqrt(grad_sum_squares(store));
  EXPECT_DOUBLE_EQ(norm, 5.0);
  EXPECT_EQ(clip_to_norm(store, norm, ClipOptions{10.0f}), 1.0f);
  clip_to_norm(store, norm, ClipOptions{1.0f});
  EXPECT_NEAR(std::sqrt(grad_sum_squares(store)), 1.0, 1e-5);
  EXPECT_EQ(clip_to_norm(store, 100.0, ClipOptions{0.0f}), 1.0f);  // 0 disables
}

}  // namespace
}  // namespace nupipe::optim
