// test_llama.cpp: the llama family's layers and model: finite differences through every new
// layer (RMSNorm, rotary embeddings, grouped-query attention fused and unfused, SwiGLU, no
// biases, tied and untied head), rotary's defining properties, grouped-query attention equal
// to multi-head attention on repeated key/value heads, and the cost descriptors to the byte.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"
#include "tests/unit/model_grad_check.h"

namespace nupipe::runtime {
namespace {

using testing::random_values;

ModelConfig llama_config() {
  ModelConfig c;
  c.family = "llama";
  c.n_layer = 2;
  c.d_model = 16;
  c.n_head = 4;
  c.n_kv_head = 2;  // two query heads per key/value head
  c.ffn_hidden = 24;
  c.vocab_size = 11;
  c.seq_len = 5;
  c.rope_theta = 50.0f;  // large angles at these few positions
  c.init_std = 0.3f;     // so every path carries signal
  return c;
}

Tensor tokens_of(Backend& be, const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty(be, {static_cast<int64_t>(v.size())}, DType::i32, MemTag::workspace);
  from_host(t, v);
  return t;
}

// RMSNorm weights away from 1, so their gradients are exercised.
void perturb_norms(ParamStore& store) {
  for (const TensorSpec& s : store.specs()) {
    if (s.init != Init::ones) continue;
    std::vector<float> v = random_values(s.numel(), std::hash<std::string>{}(s.name), 0.5f);
    for (float& x : v) x += 1.0f;
    Tensor t = store.param(s.name);
    from_host(t, v);
  }
}

const std::vector<int32_t> kTokens = {1, 3, 3, 0, 10, 2, 3, 7, 7, 1};
const std::vector<int32_t> kTargets = {3, 3, 0, 10, 2, 3, 7, 7, 1, 4};

TEST(LlamaModel, SpecsHaveNoBiasesAndTheLlamaShapes) {
  CpuBackend be;
  ModelConfig cfg = llama_config();
  cfg.tie_embeddings = false;
  StageModel model(be, cfg, StageSlice::whole(cfg));
  const ParamStore& p = model.params();
  for (const TensorSpec& s : p.specs()) {
    EXPECT_EQ(s.name.find(".bias"), std::string::npos) << s.name;
  }
  EXPECT_FALSE(p.has("embed.wpe.weight"));
  EXPECT_EQ(p.spec("blocks.0.attn.qkv.weight").shape, (Shape{(4 + 2 * 2) * 4, 16}));
  EXPECT_EQ(p.spec("blocks.1.mlp.gate_up.weight").shape, (Shape{48, 16}));
  EXPECT_EQ(p.spec("blocks.1.mlp.down.weight").shape, (Shape{16, 24}));
  EXPECT_EQ(p.spec("blocks.0.norm1.weight").shape, (Shape{16}));
  EXPECT_EQ(p.spec("head.norm.weight").shape, (Shape{16}));
  EXPECT_EQ(p.spec("head.lm.weight").shape, (Shape{11, 16}));
  ModelConfig wide = cfg;
  wide.ffn_hidden = 0;  // 8/3 d_model rounded up to a multiple of 256
  wide.d_model = 4096;
  EXPECT_EQ(wide.ffn_width(), 11008);  // Llama 2 7B's
}

// Every parameter gradient of the whole model against central differences, GQA with two
// query heads per key/value head, fused and unfused attention, tied and untied head. The
// bounds are test_layers.cpp's whole-model ones (same step and reasoning).
TEST(LlamaGrad, WholeModel) {
  for (auto [tied, fused] : {std::pair{true, false}, {false, false}, {true, true}}) {
    CpuBackend be;
    ModelConfig cfg = llama_config();
    cfg.tie_embeddings = tied;
    cfg.fused_attention = fused;
    StageModel model(be, cfg, StageSlice::whole(cfg));
    model.params().initialize(5);
    perturb_norms(model.params());
    SCOPED_TRACE(std::string(tied ? "tied" : "untied") + (fused ? ", fused" : ", unfused"));
    testing::expect_parameter_gradients(model, kTokens, kTargets, 2);
  }
}

// A middle slice's input gradient (the blocks' dx, RMSNorm's and rotary's backward included)
// against central differences along random directions of its input hidden state.
TEST(LlamaGrad, BlocksInputGradient) {
  CpuBackend be;
  const ModelConfig cfg = llama_config();
  StageModel model(be, cfg, StageSlice{0, 2, false, false});
  model.params().initialize(6);
  perturb_norms(model.params());
  testing::expect_input_gradient(model, 2);
}

// The rotation is orthogonal (inverse undoes it, norms of rotated pairs kept), position 0 is
// unrotated, and q . k after rotation depends on the positions' difference only.
TEST(LlamaLayers, RotaryIsARelativeRotation) {
  CpuBackend be;
  const int64_t T = 7, D = 8, heads = 3, ld = 30, N = 2 * T;  // two sequences, padded rows
  Tensor x = Tensor::empty(be, {N, ld}, DType::f32, MemTag::workspace);
  const std::vector<float> x0 = random_values(N * ld, 31);
  from_host(x, x0);
  be.rope(x.data(), N, T, ld, heads, D, 10000.0f, false);
  const std::vector<float> r = to_host(x);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t c = heads * D; c < ld; ++c) EXPECT_EQ(r[i * ld + c], x0[i * ld + c]);  // untouched
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t d = 0; d < D / 2; ++d) {
        const int64_t a = i * ld + h * D + d, b = a + D / 2;
        EXPECT_NEAR(std::hypot(r[a], r[b]), std::hypot(x0[a], x0[b]), 1e-6);
        if (i % T == 0) {
          EXPECT_EQ(r[a], x0[a]);
        }
      }
    }
  }
  be.rope(x.data(), N, T, ld, heads, D, 10000.0f, true);
  const std::vector<float> back = to_host(x);
  for (size_t i = 0; i < back.size(); ++i) EXPECT_NEAR(back[i], x0[i], 1e-6) << i;
  // The same q at position t and k at position s in every row: dot(rope(q, t), rope(k, s))
  // equals dot(rope(q, t + 2), rope(k, s + 2)).
  const std::vector<float> q = random_values(D, 41), k = random_values(D, 42);
  std::vector<float> qs(T * D), ks(T * D);
  for (int64_t t = 0; t < T; ++t) {
    std::copy(q.begin(), q.end(), qs.begin() + t * D);
    std::copy(k.begin(), k.end(), ks.begin() + t * D);
  }
  Tensor tq = Tensor::empty(be, {T, D}, DType::f32, MemTag::workspace);
  Tensor tk = Tensor::empty(be, {T, D}, DType::f32, MemTag::workspace);
  from_host(tq, qs);
  from_host(tk, ks);
  be.rope(tq.data(), T, T, D, 1, D, 10000.0f, false);
  be.rope(tk.data(), T, T, D, 1, D, 10000.0f, false);
  const std::vector<float> rq = to_host(tq), rk = to_host(tk);
  auto dot = [&](int64_t t, int64_t s) {
    double acc = 0;
    for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(rq[t * D + d]) * rk[s * D + d];
    return acc;
  };
  EXPECT_NEAR(dot(3, 1), dot(5, 3), 1e-5);
  EXPECT_NEAR(dot(1, 4), dot(2, 5), 1e-5);
  EXPECT_GT(std::abs(dot(3, 1) - dot(3, 2)), 1e-3) << "the angle must depend on the offset";
}

// Grouped-query attention is multi-head attention whose key/value heads repeat: a model with
// n_kv_head = 2 equals, in loss and gradients, the n_kv_head = n_head model whose k and v
// projection rows are each kv head's rows repeated (its k/v gradients summing to the GQA ones).
TEST(LlamaLayers, GroupedQueryAttentionEqualsRepeatedHeads) {
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused" : "unfused");
    CpuBackend be;
    ModelConfig gqa = llama_config();
    gqa.fused_attention = fused;
    ModelConfig mha = gqa;
    mha.n_kv_head = 4;
    StageModel a(be, gqa, StageSlice::whole(gqa)), b(be, mha, StageSlice::whole(mha));
    a.params().initialize(8);
    perturb_norms(a.params());
    const int64_t D = gqa.head_dim(), C = gqa.d_model, H = 4, Hkv = 2;
    // Row of head h of block (0 q, 1 k, 2 v) in a [(H + 2 Hkv') D, C] qkv weight.
    auto row = [&](int64_t heads_kv, int part, int64_t h) {
      return (part == 0 ? h : part == 1 ? H + h : H + heads_kv + h) * D;
    };
    for (const TensorSpec& s : b.params().specs()) {
      std::vector<float> src = to_host(a.params().param(s.name)), dst;
      if (s.name.find("attn.qkv") == std::string::npos) {
        dst = src;
      } else {
        dst.resize(static_cast<size_t>(s.numel()));
        for (int part = 0; part < 3; ++part) {
          for (int64_t h = 0; h < H; ++h) {
            const int64_t from = row(Hkv, part, part == 0 ? h : h / (H / Hkv)),
                          to = row(H, part, h);
            std::copy(src.begin() + from * C, src.begin() + (from + D) * C,
                      dst.begin() + to * C);
          }
        }
      }
      Tensor t = b.params().param(s.name);
      from_host(t, dst);
    }
    Tensor tokens = tokens_of(be, kTokens), targets = tokens_of(be, kTargets);
    a.params().zero_grads();
    b.params().zero_grads();
    const double la = a.forward_backward(tokens, targets, 2, 0.1f);
    const double lb = b.forward_backward(tokens, targets, 2, 0.1f);
    EXPECT_NEAR(la, lb, 1e-5 * std::abs(la));
    for (const TensorSpec& s : a.params().specs()) {
      const std::vector<float> ga = to_host(a.params().grad(s.name)),
                               gb = to_host(b.params().grad(s.name));
      std::vector<float> want = gb;
      if (s.name.find("attn.qkv") != std::string::npos) {  // sum the repeated heads
        want.assign(ga.size(), 0.0f);
        for (int part = 0; part < 3; ++part) {
          for (int64_t h = 0; h < H; ++h) {
            const int64_t to = row(Hkv, part, part == 0 ? h : h / (H / Hkv)),
                          from = row(H, part, h);
            for (int64_t i = 0; i < D * C; ++i) want[to * C + i] += gb[from * C + i];
          }
        }
      }
      ASSERT_EQ(ga.size(), want.size()) << s.name;
      double scale = 0;
      for (float v : want) scale = std::max(scale, std::abs(static_cast<double>(v)));
      for (size_t i = 0; i < ga.size(); ++i) {
        ASSERT_NEAR(ga[i], want[i], 2e-5 * scale + 1e-9) << s.name << "[" << i << "]";
      }
    }
  }
}

// What the forward keeps, each block's backward workspace peak, and the parameters: the cost
// descriptors to the byte, fused and unfused, GQA, one and several sequences, recompute.
// The second config's wide MLP peaks above attention per token, while unfused attention holds
// one sequence's score gradient besides: the block's peak is the larger phase, not their sum.
// The third and fourth add Yuan 2.0's localized filter (multi-head), whose backward holds its
// own buffers beside attention's.
TEST(LlamaCost, DescriptorsMatchTheAllocator) {
  ModelConfig wide = llama_config();
  wide.ffn_hidden = 96;
  wide.seq_len = 16;
  ModelConfig yuan = llama_config(), yuan_wide = wide;
  for (ModelConfig* y : {&yuan, &yuan_wide}) {
    y->lfa = true;
    y->n_kv_head = 0;
  }
  for (bool fused : {false, true}) {
    for (DType dt : {DType::f32, DType::bf16}) {
      for (const ModelConfig& base : {llama_config(), wide, yuan, yuan_wide}) {
        SCOPED_TRACE(std::string(fused ? "fused" : "unfused") + " " + dtype_name(dt) + " ffn " +
                     std::to_string(base.ffn_hidden) + (base.lfa ? " lfa" : ""));
        ModelConfig cfg = base;
        cfg.fused_attention = fused;
        cfg.dtype = dt;
        for (bool tied : {true, false}) {
          cfg.tie_embeddings = tied;
          CpuBackend be;
          StageModel model(be, cfg, StageSlice::whole(cfg));
          int64_t params = 0;
          for (const auto& [name, c] : stage_costs(cfg, model.slice())) params += c.params;
          EXPECT_EQ(params, model.params().numel());
        }
        for (int64_t B : {1, 3}) {
          CpuBackend be;
          StageModel model(be, cfg, StageSlice{0, 2, true, false});
          model.params().initialize(1);
          const int64_t N = B * cfg.seq_len, C = cfg.d_model;
          const int64_t before = be.memory().current(MemTag::activations);
          StageModel::Pass pass;
          model.forward(pass, tokens_of(be, std::vector<int32_t>(N, 1)), B);
          LayerCost total;
          for (const auto& [name, c] : stage_costs(cfg, model.slice())) total += c;
          EXPECT_EQ(be.memory().current(MemTag::activations) - before,
                    total.activation_bytes_per_token * N);
          pass = {};
          std::vector<TensorSpec> specs;
          LlamaBlock::add_specs(specs, cfg, 0);
          ParamStore store(be, specs, 1, dt);
          store.initialize(1);
          LlamaBlock block(store, cfg, 0);
          Tensor x = Tensor::empty(be, {N, C}, dt, MemTag::activations);
          from_host(x, random_values(N * C, 12));
          for (bool recompute : {false, true}) {
            LlamaBlock::Saved s;
            const int64_t a0 = be.memory().current(MemTag::activations);
            Tensor out = block.forward(x, B, s, recompute);
            // The block's output is the next block's input: what recompute keeps of this one.
            EXPECT_EQ(be.memory().current(MemTag::activations) - a0,
                      (recompute ? LlamaBlock::cost(cfg).recompute_bytes_per_token
                                 : LlamaBlock::cost(cfg).activation_bytes_per_token) * N)
                << "kept by the block (its output included), recompute " << recompute;
            Tensor dy = Tensor::empty(be, {N, C}, dt, MemTag::workspace);
            from_host(dy, random_values(N * C, 13));
            const int64_t ws0 = be.memory().current(MemTag::workspace);
            be.memory().reset_peaks();
            Tensor dx = block.backward(dy, B, s);
            EXPECT_EQ(be.memory().peak(MemTag::workspace) - ws0,
                      LlamaBlock::cost(cfg).backward_bytes(N))
                << "B " << B << ", recompute " << recompute;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace nupipe::runtime
