// test_precision.cpp: the model in bf16 (ModelConfig::dtype) against the same model in fp32.
// Memory: the parameters' compute copy is exactly half, the activations are half except the
// LayerNorm statistics (fp32 in both), the gradients are fp32 in both, and AdamW owns fp32
// master weights. Numerics: on the same (bf16-representable) weights and batch, the loss and
// the gradients of the bf16 model stay within bounds argued from bf16's rounding, and an
// optimizer step keeps the master weights in fp32 while the compute copy is their rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "optim/adamw.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

ModelConfig config(DType dtype) {
  ModelConfig c;
  c.n_layer = 3;
  c.d_model = 64;
  c.n_head = 4;
  c.vocab_size = 97;
  c.seq_len = 16;
  c.init_std = 0.1f;
  c.dtype = dtype;
  return c;
}

struct Pass {
  double loss = 0.0;
  std::vector<float> grads;
  int64_t params = 0, grads_bytes = 0, kept = 0;  // allocator bytes
};

// One forward + backward of a 3-sequence batch; the weights are the fp32 initial values
// rounded to bf16 in both precisions, so both models compute on identical weights.
Pass run(DType dtype) {
  CpuBackend be;
  be.set_threads(1);
  const ModelConfig cfg = config(dtype);
  StageModel model(be, cfg, StageSlice::whole(cfg));
  std::vector<float> w = model.params().initial_values(3, 0, model.params().padded_numel());
  for (float& x : w) x = round_to_bf16(x);
  Tensor flat = model.params().flat_params();
  from_host(flat, w);
  const int64_t B = 3, N = B * cfg.seq_len;
  const testing::Batch batch = testing::fixed_batch(be, N, cfg.vocab_size);
  const Tensor& t = batch.tokens;
  const Tensor& g = batch.targets;
  model.params().zero_grads();
  Pass r;
  r.params = be.memory().current(MemTag::params);
  r.grads_bytes = be.memory().current(MemTag::grads);
  StageModel::Pass pass;
  model.forward(pass, t, B);
  r.kept = be.memory().current(MemTag::activations);
  Tensor dhidden;
  r.loss = model.head_forward_backward(pass, g, 1.0f / N, dhidden) / N;
  model.backward(pass, dhidden);
  r.grads = to_host(model.params().flat_grads());
  return r;
}

TEST(Precision, Bf16HalvesParamsAndActivationsToTheByte) {
  const Pass f = run(DType::f32), b = run(DType::bf16);
  const ModelConfig cfg = config(DType::f32);
  const int64_t N = 3 * cfg.seq_len;
  EXPECT_EQ(b.params * 2, f.params) << "the compute copy is bf16";
  EXPECT_EQ(b.grads_bytes, f.grads_bytes) << "parameter gradients stay fp32";
  // Every kept activation halves except each block's two LayerNorms' mean and rstd
  // (2 x 4 bytes per token each) and, with fused attention, its log-sum-exp (4 bytes per token
  // and head): fp32 in both precisions.
  const int64_t stats =
      cfg.n_layer * (2 * 8 + (cfg.fused_attention ? 4 * cfg.n_head : 0)) * N;
  EXPECT_EQ(b.kept, (f.kept - stats) / 2 + stats);
}

// Bounds: every bf16 kernel output is the fp32 result rounded once (relative error <= 2^-8),
// and errors compound through ~20 roundings per block on the way to the loss; on a loss of
// ~4.8 that stays far below 1e-2 relative (measured 2.0e-4). Gradients: a relative error of the
// whole gradient vector (norm) below 5e-2 (measured 9.5e-3), and the gradient points
// the same way (cosine > 0.99; measured 0.99996).
TEST(Precision, Bf16LossAndGradientsTrackFp32) {
  const Pass f = run(DType::f32), b = run(DType::bf16);
  EXPECT_GT(f.loss, 4.0);
  EXPECT_LT(std::abs(b.loss - f.loss) / f.loss, 1e-2) << "fp32 " << f.loss << ", bf16 " << b.loss;
  double diff = 0, norm = 0, dot = 0, nb = 0;
  for (size_t i = 0; i < f.grads.size(); ++i) {
    diff += (b.grads[i] - f.grads[i]) * static_cast<double>(b.grads[i] - f.grads[i]);
    norm += f.grads[i] * static_cast<double>(f.grads[i]);
    nb += b.grads[i] * static_cast<double>(b.grads[i]);
    dot += f.grads[i] * static_cast<double>(b.grads[i]);
  }
  const double rel = std::sqrt(diff / norm), cosine = dot / std::sqrt(norm * nb);
  std::printf("[ bf16     ] loss fp32 %.6f bf16 %.6f (rel %.2e); gradient rel err %.2e, cosine %.6f\n",
              f.loss, b.loss, std::abs(b.loss - f.loss) / f.loss, rel, cosine);
  EXPECT_LT(rel, 5e-2);
  EXPECT_GT(cosine, 0.99);
}

// AdamW under bf16: the master weights are fp32 and updated in fp32; the compute copy is their
// rounding to nearest even after every step.
TEST(Precision, MasterWeightsStayFp32AndTheComputeCopyIsTheirRounding) {
  CpuBackend be;
  const ModelConfig cfg = config(DType::bf16);
  StageModel model(be, cfg, StageSlice::whole(cfg));
  ParamStore& store = model.params();
  store.initialize(5);
  optim::AdamW adamw(store, optim::AdamWOptions{});
  ASSERT_TRUE(adamw.owns_master());
  EXPECT_EQ(be.memory().current(MemTag::optimizer), 3 * 4 * store.numel());  // m, v, master
  from_host(adamw.master(), store.initial_values(5, 0, store.numel()));
  std::vector<float> g(store.padded_numel());
  for (size_t i = 0; i < g.size(); ++i) g[i] = 1e-3f * static_cast<float>((i * 7919) % 201) - 0.1f;
  Tensor grads = store.flat_grads();
  from_host(grads, g);
  for (int step = 0; step < 3; ++step) adamw.step(1e-3f);
  const std::vector<float> master = to_host(adamw.master());
  const std::vector<float> compute = to_host(store.flat_params());
  int64_t not_bf16 = 0;
  for (int64_t i = 0; i < store.numel(); ++i) {
    ASSERT_EQ(compute[i], round_to_bf16(master[i])) << "element " << i;
    not_bf16 += master[i] != round_to_bf16(master[i]);
  }
  EXPECT_GT(not_bf16, store.numel() / 2) << "the master weights must carry fp32 precision";
}

// runtime.flush_denormals: the cpu backend's kernels flush subnormal inputs and results to zero
// on every compute thread when asked, and follow IEEE arithmetic otherwise.
TEST(Precision, FlushDenormalsIsAppliedToTheKernels) {
  CpuBackend be;
  be.set_threads(2);
  std::vector<float> x(1024, 1e-39f);  // subnormal (below 1.18e-38)
  auto scaled = [&](bool flush) {
    EXPECT_TRUE(be.set_flush_denormals(flush));
    std::vector<float> y = x;
    be.scale(y.data(), 1.0f, static_cast<int64_t>(y.size()));
    return y;
  };
  for (float v : scaled(true)) ASSERT_EQ(v, 0.0f);
  for (float v : scaled(false)) ASSERT_EQ(v, 1e-39f);
}

}  // namespace
}  // namespace nupipe::runtime
