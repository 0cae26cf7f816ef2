// test_yuan.cpp: Yuan 2.0's localized filtering attention (model.lfa) on the llama block:
// the causal convolution's reach (t sees t - 1 and t of its own sequence) and finite
// differences through the whole model and a middle slice's input. Its cost descriptors are
// checked with the llama ones (LlamaCost.DescriptorsMatchTheAllocator).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/layers/localized_filter.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"
#include "tests/unit/model_grad_check.h"

namespace nupipe::runtime {
namespace {

using testing::random_values;

ModelConfig yuan_config() {
  ModelConfig c;
  c.family = "llama";
  c.lfa = true;
  c.n_layer = 2;
  c.d_model = 16;
  c.n_head = 4;  // multi-head, as Yuan's
  c.ffn_hidden = 24;
  c.vocab_size = 11;
  c.seq_len = 5;
  c.rope_theta = 50.0f;
  c.init_std = 0.3f;  // so every path carries signal
  return c;
}

// Norm weights away from 1 and biases away from 0, so their gradients are exercised.
void perturb(ParamStore& store) {
  for (const TensorSpec& s : store.specs()) {
    if (s.init == Init::normal) continue;
    std::vector<float> v = random_values(s.numel(), std::hash<std::string>{}(s.name), 0.5f);
    if (s.init == Init::ones)
      for (float& x : v) x += 1.0f;
    Tensor t = store.param(s.name);
    from_host(t, v);
  }
}

const std::vector<int32_t> kTokens = {1, 3, 3, 0, 10, 2, 3, 7, 7, 1};
const std::vector<int32_t> kTargets = {3, 3, 0, 10, 2, 3, 7, 7, 1, 4};

TEST(YuanModel, SpecsAddTheFilterToEveryBlock) {
  CpuBackend be;
  const ModelConfig cfg = yuan_config();
  StageModel model(be, cfg, StageSlice::whole(cfg));
  const ParamStore& p = model.params();
  for (int b = 0; b < 2; ++b) {
    const std::string f = "blocks." + std::to_string(b) + ".attn.lfa.";
    EXPECT_EQ(p.spec(f + "conv1.weight").shape, (Shape{2, 8, 16}));
    EXPECT_EQ(p.spec(f + "conv1.bias").shape, (Shape{8}));
    EXPECT_EQ(p.spec(f + "conv2.weight").shape, (Shape{2, 16, 8}));
    EXPECT_EQ(p.spec(f + "conv2.bias").shape, (Shape{16}));
    EXPECT_EQ(p.spec(f + "norm.weight").shape, (Shape{16}));
  }
  EXPECT_EQ(p.spec("blocks.0.attn.qkv.weight").shape, (Shape{48, 16}));
  int64_t params = 0;
  for (const auto& [name, c] : stage_costs(cfg, model.slice())) params += c.params;
  EXPECT_EQ(params, p.numel());
}

// A change at position t of one sequence changes the filter's output at t, t + 1 and t + 2 of
// that sequence (two convolutions of width 2) and nowhere else: causal, and sequences apart.
TEST(YuanLayers, FilterSeesTwoPositionsBackWithinItsSequence) {
  CpuBackend be;
  ModelConfig cfg = yuan_config();
  cfg.seq_len = 6;
  std::vector<TensorSpec> specs;
  LocalizedFilter::add_specs(specs, "lfa", cfg);
  ParamStore store(be, specs, 1, DType::f32);
  store.initialize(3);
  perturb(store);
  LocalizedFilter filter(store, "lfa", cfg);
  const int64_t B = 2, T = cfg.seq_len, C = cfg.d_model, N = B * T;
  const std::vector<float> base = random_values(N * C, 31);
  auto run = [&](const std::vector<float>& in) {
    Tensor h = Tensor::empty(be, {N, C}, DType::f32, MemTag::activations);
    from_host(h, in);
    LocalizedFilter::Saved s;
    filter.forward(h, s);
    return to_host(s.norm.out);
  };
  const std::vector<float> y0 = run(base);
  for (int64_t t : {0, 2, 5}) {
    std::vector<float> in = base;
    in[(1 * T + t) * C + 3] += 0.5f;  // sequence 1, position t, one channel
    const std::vector<float> y = run(in);
    for (int64_t row = 0; row < N; ++row) {
      const int64_t b = row / T, u = row % T;
      bool changed = false;
      for (int64_t c = 0; c < C; ++c) changed |= y[row * C + c] != y0[row * C + c];
      const bool reach = b == 1 && u >= t && u <= t + 2;
      EXPECT_EQ(changed, reach) << "perturbed t " << t << ": row " << row;
    }
  }
}

// Every parameter gradient of the whole model against central differences, fused and unfused
// attention, tied and untied head (the bounds of test_llama.cpp's whole-model check).
TEST(YuanGrad, WholeModel) {
  for (auto [tied, fused] : {std::pair{true, false}, {false, true}}) {
    CpuBackend be;
    ModelConfig cfg = yuan_config();
    cfg.tie_embeddings = tied;
    cfg.fused_attention = fused;
    StageModel model(be, cfg, StageSlice::whole(cfg));
    model.params().initialize(5);
    perturb(model.params());
    SCOPED_TRACE(std::string(tied ? "tied" : "untied") + (fused ? ", fused" : ", unfused"));
    testing::expect_parameter_gradients(model, kTokens, kTargets, 2);
  }
}

// A middle slice's input gradient (the filter's residual and convolutions' dx included)
// against central differences along random directions of its input.
TEST(YuanGrad, BlocksInputGradient) {
  CpuBackend be;
  const ModelConfig cfg = yuan_config();
  StageModel model(be, cfg, StageSlice{0, 2, false, false});
  model.params().initialize(6);
  perturb(model.params());
  testing::expect_input_gradient(model, 2);
}

}  // namespace
}  // namespace nupipe::runtime
