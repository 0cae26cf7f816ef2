// test_layers.cpp: every layer's hand-written backward against central finite differences,
// the whole model's too, plus causality, initial loss and activation accounting.
//
// Tolerance: everything runs in fp32. A directional difference (f(x+eps v) - f(x-eps v))/2eps
// with eps = 1e-2 has truncation error O(eps^2 f''') ~ 1e-4 relative for these smooth
// functions, and rounding error ~ 1e-7 * |f| / eps; the objective is accumulated in double
// over fp32 outputs of magnitude ~1, so the combined error stays below ~1e-3 relative. We
// assert 5e-3: a wrong term in a backward (a missing factor, a transposed product, a dropped
// path) shows up as O(1) relative error along a random direction. The whole-model check
// states its own (looser) bounds where it is made.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

using testing::check_gradients;
using testing::GradSlot;
using testing::random_values;
using testing::weighted_sum;

constexpr double kEps = 1e-2;
constexpr double kTol = 5e-3;

ModelConfig small_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.d_model = 8;
  c.n_head = 2;
  c.vocab_size = 11;
  c.seq_len = 5;
  c.init_std = 0.3f;  // larger than GPT-2's so every path carries signal
  return c;
}

Tensor host_tensor(Backend& be, Shape shape, const std::vector<float>& values, MemTag tag) {
  Tensor t = Tensor::empty(be, std::move(shape), DType::f32, tag);
  from_host(t, values);
  return t;
}

Tensor token_tensor(Backend& be, const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty(be, {static_cast<int64_t>(values.size())}, DType::i32,
                           MemTag::workspace);
  from_host(t, values);
  return t;
}

// Non-trivial LayerNorm weights and biases so their paths are exercised.
void perturb_norms(ParamStore& store) {
  for (const TensorSpec& s : store.specs()) {
    if (s.init == Init::normal) continue;
    Tensor t = store.param(s.name);
    std::vector<float> v = random_values(s.numel(), std::hash<std::string>{}(s.name), 0.5f);
    for (auto& x : v) x += s.init == Init::ones ? 1.0f : 0.0f;
    from_host(t, v);
  }
}

void expect_all_close(const std::vector<testing::GradCheckResult>& results, double rtol = kTol,
                      double atol = 0.0) {
  ASSERT_FALSE(results.empty());
  for (const auto& r : results) {
    EXPECT_LE(std::abs(r.analytic - r.numeric),
              rtol * std::max(std::abs(r.analytic), std::abs(r.numeric)) + atol)
        << r.name << ": analytic " << r.analytic << " numeric " << r.numeric;
  }
}

// Slots for every parameter of a store plus extra input tensors; the analytic gradients
// are the store's gradients and the given input gradients.
std::vector<GradSlot> param_slots(const ParamStore& store) {
  std::vector<GradSlot> slots;
  for (const TensorSpec& s : store.specs()) slots.push_back({s.name, store.param(s.name)});
  return slots;
}

std::vector<std::vector<float>> param_grads(const ParamStore& store) {
  std::vector<std::vector<float>> g;
  for (const TensorSpec& s : store.specs()) g.push_back(to_host(store.grad(s.name)));
  return g;
}

class LayerGrad : public ::testing::Test {
 protected:
  CpuBackend be;
  ModelConfig cfg = small_config();
  int64_t B = 2, N = 2 * 5;
};

TEST_F(LayerGrad, Linear) {
  std::vector<TensorSpec> specs;
  Linear::add_specs(specs, "lin", 6, 4, 0.5f);
  ParamStore store(be, specs);
  store.initialize(1);
  perturb_norms(store);  // non-zero bias
  Linear lin(store, "lin");
  Tensor x = host_tensor(be, {N, 6}, random_values(N * 6, 2), MemTag::activations);
  const auto probe = random_values(N * 4, 3);
  auto objective = [&] {
    Tensor y = Tensor::empty(be, {N, 4}, DType::f32, MemTag::activations);
    lin.forward(x, y);
    return weighted_sum(y, probe);
  };
  auto analytic = [&] {
    store.zero_grads();
    Tensor dy = host_tensor(be, {N, 4}, probe, MemTag::workspace);
    Tensor dx = Tensor::empty(be, {N, 6}, DType::f32, MemTag::workspace);
    lin.backward(dy, x, &dx);
    auto g = param_grads(store);
    g.push_back(to_host(dx));
    return g;
  };
  auto slots = param_slots(store);
  slots.push_back({"x", x});
  expect_all_close(check_gradients(objective, analytic, slots, kEps));
}

TEST_F(LayerGrad, LayerNorm) {
  std::vector<TensorSpec> specs;
  LayerNorm::add_specs(specs, "ln", 8);
  ParamStore store(be, specs);
  store.initialize(1);
  perturb_norms(store);
  LayerNorm ln(store, "ln", 1e-5f);
  Tensor x = host_tensor(be, {N, 8}, random_values(N * 8, 4, 2.0f), MemTag::activations);
  const auto probe = random_values(N * 8, 5);
  auto objective = [&] { return weighted_sum(ln.forward(x).out, probe); };
  auto analytic = [&] {
    store.zero_grads();
    auto saved = ln.forward(x);
    Tensor dx = ln.backward(host_tensor(be, {N, 8}, probe, MemTag::workspace), x, saved);
    auto g = param_grads(store);
    g.push_back(to_host(dx));
    return g;
  };
  auto slots = param_slots(store);
  slots.push_back({"x", x});
  expect_all_close(check_gradients(objective, analytic, slots, kEps));
}

// Finite differences through the unfused reference and the fused kernels; and the two agree
// up to fp32 summation order: on the same weights and input, the output, the input gradient
// and every parameter gradient within a few fp32 ulps of their scale.
TEST_F(LayerGrad, CausalSelfAttention) {
  std::vector<std::vector<float>> results[2];  // unfused, fused: parameter grads, dx, output
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused attention" : "unfused attention");
    ModelConfig cfg = this->cfg;
    cfg.fused_attention = fused;
    std::vector<TensorSpec> specs;
    CausalSelfAttention::add_specs(specs, "attn", cfg);
    ParamStore store(be, specs);
    store.initialize(1);
    perturb_norms(store);
    CausalSelfAttention attn(store, "attn", cfg);
    Tensor x = host_tensor(be, {N, 8}, random_values(N * 8, 6), MemTag::activations);
    const auto probe = random_values(N * 8, 7);
    auto run = [&](CausalSelfAttention::Saved& s) {
      Tensor out = Tensor::zeros(be, {N, 8}, DType::f32, MemTag::activations);
      attn.forward(x, B, out, s);
      return out;
    };
    auto objective = [&] {
      CausalSelfAttention::Saved s;
      return weighted_sum(run(s), probe);
    };
    auto analytic = [&] {
      store.zero_grads();
      CausalSelfAttention::Saved s;
      run(s);
      Tensor dx = attn.backward(host_tensor(be, {N, 8}, probe, MemTag::workspace), x, B, s);
      auto g = param_grads(store);
      g.push_back(to_host(dx));
      return g;
    };
    auto slots = param_slots(store);
    slots.push_back({"x", x});
    expect_all_close(check_gradients(objective, analytic, slots, kEps));
    results[fused] = analytic();
    CausalSelfAttention::Saved s;
    results[fused].push_back(to_host(run(s)));
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  for (size_t t = 0; t < results[0].size(); ++t) {
    double scale = 0;
    for (float v : results[0][t]) scale = std::max(scale, std::abs(static_cast<double>(v)));
    for (size_t i = 0; i < results[1][t].size(); ++i) {
      EXPECT_NEAR(results[1][t][i], results[0][t][i], 1e-5 * scale) << "tensor " << t << " [" << i
                                                                    << "]";
    }
  }
}

TEST_F(LayerGrad, AttentionIsCausal) {
  for (bool fused : {false, true}) {  // the unfused reference and the fused kernels
    SCOPED_TRACE(fused ? "fused attention" : "unfused attention");
    ModelConfig cfg = this->cfg;
    cfg.fused_attention = fused;
    std::vector<TensorSpec> specs;
    CausalSelfAttention::add_specs(specs, "attn", cfg);
    ParamStore store(be, specs);
    store.initialize(1);
    CausalSelfAttention attn(store, "attn", cfg);
    std::vector<float> xs = random_values(N * 8, 6);
    auto out_of = [&](const std::vector<float>& values) {
      Tensor x = host_tensor(be, {N, 8}, values, MemTag::activations);
      Tensor out = Tensor::zeros(be, {N, 8}, DType::f32, MemTag::activations);
      CausalSelfAttention::Saved s;
      attn.forward(x, B, out, s);
      return to_host(out);
    };
    const auto before = out_of(xs);
    for (int c = 0; c < 8; ++c) xs[3 * 8 + c] += 1.0f;  // change position 3 of sequence 0
    const auto after = out_of(xs);
    for (int t = 0; t < 5; ++t) {
      for (int c = 0; c < 8; ++c) {
        const size_t i = t * 8 + c;
        if (t < 3) {
          EXPECT_EQ(before[i], after[i]) << "position " << t << " saw the future";
        }
      }
    }
    bool changed = false;
    for (int c = 0; c < 8; ++c) changed |= before[3 * 8 + c] != after[3 * 8 + c];
    EXPECT_TRUE(changed) << "position 3 did not see itself";
    for (size_t i = 5 * 8; i < before.size(); ++i) {
      EXPECT_EQ(before[i], after[i]) << "sequences mixed";
    }
  }
}

TEST_F(LayerGrad, Mlp) {
  std::vector<TensorSpec> specs;
  Mlp::add_specs(specs, "mlp", cfg);
  ParamStore store(be, specs);
  store.initialize(1);
  perturb_norms(store);
  Mlp mlp(store, "mlp");
  Tensor x = host_tensor(be, {N, 8}, random_values(N * 8, 8), MemTag::activations);
  const auto probe = random_values(N * 8, 9);
  auto run = [&](Mlp::Saved& s) {
    Tensor out = Tensor::zeros(be, {N, 8}, DType::f32, MemTag::activations);
    mlp.forward(x, out, s);
    return out;
  };
  auto objective = [&] {
    Mlp::Saved s;
    return weighted_sum(run(s), probe);
  };
  auto analytic = [&] {
    store.zero_grads();
    Mlp::Saved s;
    run(s);
    Tensor dx = mlp.backward(host_tensor(be, {N, 8}, probe, MemTag::workspace), x, s);
    auto g = param_grads(store);
    g.push_back(to_host(dx));
    return g;
  };
  auto slots = param_slots(store);
  slots.push_back({"x", x});
  expect_all_close(check_gradients(objective, analytic, slots, kEps));
}

TEST_F(LayerGrad, Block) {
  std::vector<TensorSpec> specs;
  Block::add_specs(specs, cfg, 0);
  ParamStore store(be, specs);
  store.initialize(1);
  perturb_norms(store);
  Block block(store, cfg, 0);
  Tensor x = host_tensor(be, {N, 8}, random_values(N * 8, 10), MemTag::activations);
  const auto probe = random_values(N * 8, 11);
  auto objective = [&] {
    Block::Saved s;
    return weighted_sum(block.forward(x, B, s), probe);
  };
  auto analytic = [&] {
    store.zero_grads();
    Block::Saved s;
    block.forward(x, B, s);
    Tensor dx = block.backward(host_tensor(be, {N, 8}, probe, MemTag::workspace), B, s);
    auto g = param_grads(store);
    g.push_back(to_host(dx));
    return g;
  };
  auto slots = param_slots(store);
  slots.push_back({"x", x});
  expect_all_close(check_gradients(objective, analytic, slots, kEps));
}

TEST_F(LayerGrad, Embedding) {
  std::vector<TensorSpec> specs;
  Embedding::add_specs(specs, cfg);
  ParamStore store(be, specs);
  store.initialize(1);
  Embedding emb(store, cfg);
  Tensor tokens = token_tensor(be, {1, 3, 3, 0, 10, 2, 3, 7, 7, 1});  // repeats on purpose
  const auto probe = random_values(N * 8, 12);
  auto objective = [&] { return weighted_sum(emb.forward(tokens), probe); };
  auto analytic = [&] {
    store.zero_grads();
    emb.backward(host_tensor(be, {N, 8}, probe, MemTag::workspace), tokens);
    return param_grads(store);
  };
  expect_all_close(check_gradients(objective, analytic, param_slots(store), kEps));
}

TEST(LmHeadGrad, TiedAndUntied) {
  for (bool tied : {true, false}) {
    CpuBackend be;
    ModelConfig cfg = small_config();
    cfg.tie_embeddings = tied;
    std::vector<TensorSpec> specs;
    if (tied) Embedding::add_specs(specs, cfg);
    LmHead::add_specs(specs, cfg);
    ParamStore store(be, specs);
    store.initialize(3);
    perturb_norms(store);
    LmHead head(store, cfg);
    const int64_t N = 10;
    Tensor x = host_tensor(be, {N, 8}, random_values(N * 8, 13, 2.0f), MemTag::activations);
    Tensor targets = token_tensor(be, {1, 3, 3, 0, 10, 2, 3, 7, 7, 1});
    const float dloss = 1.0f / N;
    auto objective = [&] { return head.forward(x, targets) * dloss; };
    auto analytic = [&] {
      store.zero_grads();
      Tensor dx;
      head.forward_backward(x, targets, dloss, &dx);
      auto g = param_grads(store);
      g.push_back(to_host(dx));
      return g;
    };
    auto slots = param_slots(store);
    slots.push_back({"x", x});
    SCOPED_TRACE(tied ? "tied" : "untied");
    expect_all_close(check_gradients(objective, analytic, slots, kEps));
  }
}

TEST(ModelGrad, WholeModel) {
  for (auto [tied, fused] : {std::pair{true, false}, {false, false}, {true, true}}) {
    CpuBackend be;
    ModelConfig cfg = small_config();
    cfg.tie_embeddings = tied;
    cfg.fused_attention = fused;
    StageModel model(be, cfg, StageSlice::whole(cfg));
    model.params().initialize(5);
    perturb_norms(model.params());
    Tensor tokens = token_tensor(be, {1, 3, 3, 0, 10, 2, 3, 7, 7, 1});
    Tensor targets = token_tensor(be, {3, 3, 0, 10, 2, 3, 7, 7, 1, 4});
    const float dloss = 1.0f / 10;
    auto objective = [&] { return model.loss_sum(tokens, targets, 2) * dloss; };
    auto analytic = [&] {
      model.params().zero_grads();
      model.forward_backward(tokens, targets, 2, dloss);
      return param_grads(model.params());
    };
    SCOPED_TRACE(std::string(tied ? "tied" : "untied") + (fused ? ", fused attention" : ""));
    // Through the whole model the objective is more curved, so a smaller step (3e-3) keeps
    // truncation error ~1e-3 relative; the fp32 rounding of the loss (~2.5e-8 absolute)
    // divided by 2 * 3e-3 gives an absolute noise ~1e-5 on small directional derivatives.
    expect_all_close(check_gradients(objective, analytic, param_slots(model.params()), 3e-3, 2),
                     1e-2, 3e-5);
  }
}

TEST(Model, InitialLossIsLogVocab) {
  CpuBackend be;
  ModelConfig cfg;  // GPT-2 init (std 0.02) on a 256-token vocabulary
  cfg.n_layer = 2;
  StageModel model(be, cfg, StageSlice::whole(cfg));
  model.params().initialize(42);
  const int64_t B = 4, N = B * cfg.seq_len;
  std::vector<int32_t> tok(N), tgt(N);
  for (int64_t i = 0; i < N; ++i) tok[i] = (i * 37) % 256, tgt[i] = (i * 101 + 7) % 256;
  const double loss = model.loss_sum(token_tensor(be, tok), token_tensor(be, tgt), B) / N;
  EXPECT_NEAR(loss, std::log(256.0), 0.05);
}

TEST(Model, InitIsDeterministicAndLayoutIndependent) {
  CpuBackend be;
  ModelConfig cfg = small_config();
  cfg.n_layer = 4;
  StageModel whole(be, cfg, StageSlice::whole(cfg));
  StageModel stage(be, cfg, StageSlice{2, 4, false, false});  // blocks 2..3 only
  whole.params().initialize(9);
  stage.params().initialize(9);
  for (const TensorSpec& s : stage.params().specs()) {
    EXPECT_EQ(to_host(stage.params().param(s.name)), to_host(whole.params().param(s.name)))
        << s.name;
  }
  StageModel other(be, cfg, StageSlice::whole(cfg));
  other.params().initialize(10);
  EXPECT_NE(to_host(other.params().flat_params()), to_host(whole.params().flat_params()));
}

TEST(Model, ResidualProjectionsUseScaledInit) {
  CpuBackend be;
  ModelConfig cfg;
  cfg.n_layer = 8;
  cfg.d_model = 128;
  StageModel model(be, cfg, StageSlice::whole(cfg));
  model.params().initialize(1);
  auto std_of = [&](const std::string& name) {
    const auto v = to_host(model.params().param(name));
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s / v.size());
  };
  EXPECT_NEAR(std_of("blocks.0.attn.qkv.weight"), 0.02, 0.001);
  EXPECT_NEAR(std_of("blocks.0.mlp.proj.weight"), 0.02 / std::sqrt(16.0), 0.0005);
  EXPECT_NEAR(std_of("blocks.3.attn.proj.weight"), 0.02 / std::sqrt(16.0), 0.0005);
  EXPECT_EQ(to_host(model.params().param("blocks.0.ln1.weight")), std::vector<float>(128, 1.0f));
}

TEST(Model, ActivationBytesMatchCostDescriptors) {
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused attention" : "unfused attention");
    CpuBackend be;
    ModelConfig cfg = small_config();
    cfg.n_layer = 3;
    cfg.fused_attention = fused;
    StageModel model(be, cfg, StageSlice::whole(cfg));
    model.params().initialize(1);
    const int64_t B = 3, N = B * cfg.seq_len;
    std::vector<int32_t> tok(N, 1);
    Tensor tokens = token_tensor(be, tok);
    const int64_t before = be.memory().current(MemTag::activations);
    StageModel::Pass pass;
    model.forward(pass, tokens, B);
    const int64_t kept = be.memory().current(MemTag::activations) - before;
    LayerCost total;
    for (const auto& [name, c] : stage_costs(cfg, model.slice())) total += c;
    EXPECT_EQ(kept, total.activation_bytes_per_token * N);
    Tensor dhidden;
    model.head_forward_backward(pass, tokens, 1.0f, dhidden);
    model.backward(pass, dhidden);
    dhidden = {};
    EXPECT_EQ(be.memory().current(MemTag::activations), before) << "backward must release";
  }
}

TEST(Model, ParameterCountMatchesCostDescriptors) {
  CpuBackend be;
  ModelConfig cfg = small_config();
  for (bool tied : {true, false}) {
    cfg.tie_embeddings = tied;
    StageModel model(be, cfg, StageSlice::whole(cfg));
    int64_t params = 0;
    for (const auto& [name, c] : stage_costs(cfg, model.slice())) params += c.params;
    EXPECT_EQ(params, model.params().numel());
  }
}

// Each layer's backward_bytes descriptor (what the cost model replays) equals the workspace-tag
// peak its backward reaches above the gradient it receives, for one and several sequences.
TEST(Model, BackwardWorkspaceMatchesCostDescriptors) {
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused attention" : "unfused attention");
    ModelConfig cfg = small_config();
    cfg.fused_attention = fused;
    for (int64_t B : {1, 3}) {
      CpuBackend be;
      const int64_t N = B * cfg.seq_len, C = cfg.d_model;
      std::vector<TensorSpec> specs;
      Block::add_specs(specs, cfg, 0);
      ParamStore store(be, specs);
      store.initialize(1);
      Block block(store, cfg, 0);
      Tensor x = host_tensor(be, {N, C}, random_values(N * C, 12), MemTag::activations);
      auto peak_of = [&](const auto& backward) {
        Tensor dy = host_tensor(be, {N, C}, random_values(N * C, 13), MemTag::workspace);
        const int64_t base = be.memory().current(MemTag::workspace);
        be.memory().reset_peaks();
        Tensor dx = backward(dy);
        return be.memory().peak(MemTag::workspace) - base;
      };
      Block::Saved bs;
      block.forward(x, B, bs);
      EXPECT_EQ(peak_of([&](const Tensor& dy) { return block.backward(dy, B, bs); }),
                Block::cost(cfg).backward_bytes(N)) << "block, B " << B;
      block.forward(x, B, bs, /*recompute=*/true);  // recomputing allocates activations only
      EXPECT_EQ(peak_of([&](const Tensor& dy) { return block.backward(dy, B, bs); }),
                Block::cost(cfg).backward_bytes(N)) << "recomputing block, B " << B;
      CausalSelfAttention attn(store, Block::prefix(0) + ".attn", cfg);
      CausalSelfAttention::Saved as;
      Tensor out = Tensor::zeros(be, {N, C}, DType::f32, MemTag::activations);
      attn.forward(x, B, out, as);
      EXPECT_EQ(peak_of([&](const Tensor& dy) { return attn.backward(dy, x, B, as); }),
                CausalSelfAttention::cost(cfg).backward_bytes(N)) << "attention, B " << B;
      Mlp mlp(store, Block::prefix(0) + ".mlp");
      Mlp::Saved ms;
      mlp.forward(x, out, ms);
      EXPECT_EQ(peak_of([&](const Tensor& dy) { return mlp.backward(dy, x, ms); }),
                Mlp::cost(cfg).backward_bytes(N)) << "mlp, B " << B;
    }
  }
}

}  // namespace
}  // namespace nupipe::runtime
