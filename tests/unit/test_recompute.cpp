// test_recompute.cpp: activation recompute. Blocks that keep only their input and repeat their
// forward in backward give exactly (bitwise) the gradients of the plain path, and the
// activations the allocator holds between forward and backward shrink to what the cost
// descriptor says: recompute_bytes_per_token instead of activation_bytes_per_token per block.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.n_layer = 3;
  c.d_model = 32;
  c.n_head = 4;
  c.vocab_size = 61;
  c.seq_len = 16;
  c.init_std = 0.1f;
  return c;
}

struct PassResult {
  std::vector<float> grads;
  double loss = 0.0;
  int64_t kept = 0;  // activation bytes held between the forward and the backward
  int64_t peak = 0;  // activation peak of the whole forward + backward
};

PassResult run(int recompute_blocks, int threads = 1) {
  CpuBackend be;
  be.set_threads(threads);
  const ModelConfig cfg = small_config();
  StageModel model(be, cfg, StageSlice::whole(cfg), 1, recompute_blocks);
  model.params().initialize(7);
  const int64_t B = 3, N = B * cfg.seq_len;
  const testing::Batch batch = testing::fixed_batch(be, N, cfg.vocab_size);
  const Tensor& t = batch.tokens;
  const Tensor& g = batch.targets;
  model.params().zero_grads();
  be.memory().reset_peaks();
  PassResult r;
  StageModel::Pass pass;
  model.forward(pass, t, B);
  r.kept = be.memory().current(MemTag::activations);
  Tensor dhidden;
  r.loss = model.head_forward_backward(pass, g, 1.0f / N, dhidden);
  model.backward(pass, dhidden);
  r.peak = be.memory().peak(MemTag::activations);
  EXPECT_EQ(be.memory().current(MemTag::activations), 0) << "activations left after backward";
  r.grads = to_host(model.params().flat_grads());
  return r;
}

TEST(Recompute, GradientsAreBitwiseThoseWithoutIt) {
  const PassResult plain = run(0);
  for (int k : {1, 2, 3}) {
    const PassResult rc = run(k);
    EXPECT_EQ(rc.loss, plain.loss) << k;
    ASSERT_EQ(rc.grads.size(), plain.grads.size());
    EXPECT_EQ(std::memcmp(rc.grads.data(), plain.grads.data(), plain.grads.size() * 4), 0)
        << k << " recomputed block(s): gradients differ";
  }
  // Also with the kernels' threads (the recomputed forward repeats the same thread split).
  const PassResult plain2 = run(0, 2), rc2 = run(3, 2);
  EXPECT_EQ(std::memcmp(rc2.grads.data(), plain2.grads.data(), plain2.grads.size() * 4), 0);
}

// Between forward and backward a recomputing block holds only its output (the next block's
// input): recompute_bytes_per_token instead of activation_bytes_per_token, per token.
TEST(Recompute, KeptActivationsShrinkAsTheCostDescriptorSays) {
  const ModelConfig cfg = small_config();
  const LayerCost block = Block::cost(cfg);
  const int64_t tokens = 3 * cfg.seq_len;
  const PassResult plain = run(0);
  for (int k : {1, 2, 3}) {
    const PassResult rc = run(k);
    EXPECT_EQ(plain.kept - rc.kept,
              k * (block.activation_bytes_per_token - block.recompute_bytes_per_token) * tokens)
        << k << " recomputed block(s)";
    EXPECT_LT(rc.peak, plain.peak) << k;
  }
}

}  // namespace
}  // namespace nupipe::runtime
