// test_optim.cpp: AdamW against a scalar re-derivation of PyTorch's update, decay flags,
// the LR schedule's shape and global-norm clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "runtime/cpu/cpu_backend.h"

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
