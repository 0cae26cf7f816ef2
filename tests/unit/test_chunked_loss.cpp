// test_chunked_loss.cpp: the LM head computed loss_chunk tokens at a time against the same head
// in one piece (loss and every gradient), against finite differences, and its loss workspace.
//
// Equivalence tolerance: chunking changes only the order of fp32 sums, never the formula. The
// loss is accumulated in double (per-row losses, then over rows), so it agrees to ~1e-12.
// Row-wise results (d hidden) come from the same per-row arithmetic; the LayerNorm and head
// weight gradients are sums over tokens, accumulated per chunk into the fp32 gradient instead
// of inside one GEMM / one reduction, so they differ by fp32 rounding (~1e-7 of their size).
// An element that is a near-cancelling sum can have a large *elementwise* relative difference
// at that rounding level, so gradients are compared per tensor, norm-relative:
// ||chunked - unchunked||_2 <= 1e-6 ||unchunked||_2 (and elementwise within 1e-6 of the
// tensor's largest element). A wrong chunk offset, a dropped or doubled chunk, or a missed
// accumulation shows up as O(1/chunks) relative error, far above that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

using testing::random_values;

constexpr double kRel = 1e-6;

ModelConfig head_config(bool tied) {
  ModelConfig c;
  c.n_layer = 1;
  c.d_model = 16;
  c.n_head = 2;
  c.vocab_size = 97;
  c.seq_len = 37;
  c.tie_embeddings = tied;
  c.init_std = 0.3f;  // logits of O(1) spread, so the softmax is far from uniform
  return c;
}

std::vector<int32_t> random_targets(int64_t n, int vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + seed * 31) % vocab);
  return t;
}

// Parameters of a head (plus the token table when tied), LayerNorm weights away from 1/0.
struct HeadFixture {
  CpuBackend be;
  ModelConfig cfg;
  std::unique_ptr<ParamStore> store;
  Tensor x, targets;

  HeadFixture(bool tied, int64_t N) : cfg(head_config(tied)) {
    std::vector<TensorSpec> specs;
    if (tied) Embedding::add_specs(specs, cfg);
    LmHead::add_specs(specs, cfg);
    store = std::make_unique<ParamStore>(be, specs);
    store->initialize(3);
    for (const char* name : {"head.ln_f.weight", "head.ln_f.bias"}) {
      Tensor t = store->param(name);
      std::vector<float> v = random_values(t.numel(), std::hash<std::string>{}(name), 0.5f);
      for (auto& e : v) e += std::string(name).ends_with("weight") ? 1.0f : 0.0f;
      from_host(t, v);
    }
    x = Tensor::empty(be, {N, cfg.d_model}, DType::f32, MemTag::activations);
    from_host(x, random_values(N * cfg.d_model, 13, 2.0f));
    targets = Tensor::empty(be, {N}, DType::i32, MemTag::activations);
    from_host(targets, random_targets(N, cfg.vocab_size, 5));
  }

  struct Result {
    double loss = 0.0, eval_loss = 0.0;
    std::vector<std::pair<std::string, std::vector<float>>> grads;  // params, then "dx"
  };
  Result run(int chunk) {
    ModelConfig c = cfg;
    c.loss_chunk = chunk;
    LmHead head(*store, c);
    store->zero_grads();
    Result r;
    Tensor dx;
    const float dloss = 1.0f / static_cast<float>(x.dim(0));
    r.loss = head.forward_backward(x, targets, dloss, &dx);
    r.eval_loss = head.forward(x, targets);
    for (const TensorSpec& s : store->specs()) {
      if (s.name == "embed.wpe.weight") continue;  // not the head's
      r.grads.emplace_back(s.name, to_host(store->grad(s.name)));
    }
    r.grads.emplace_back("dx", to_host(dx));
    return r;
  }
};

struct Diff { double norm_rel = 0.0, max_rel = 0.0; };  // vs ||ref||_2, vs max|ref|
Diff diff(const std::vector<float>& a, const std::vector<float>& ref) {
  double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    d2 += d * d;
    r2 += static_cast<double>(ref[i]) * ref[i];
    dmax = std::max(dmax, std::abs(d));
    rmax = std::max(rmax, std::abs(static_cast<double>(ref[i])));
  }
  return {std::sqrt(d2 / r2), dmax / rmax};
}

// Chunk sizes against 37 tokens: 1, dividing none, a divisor-free prime, N - 1, N, > N.
TEST(ChunkedLoss, EqualsUnchunkedLossAndEveryGradient) {
  const int64_t N = 37;
  double worst_loss = 0, worst_norm = 0, worst_max = 0;
  for (bool tied : {true, false}) {
    HeadFixture f(tied, N);
    const auto ref = f.run(0);
    ASSERT_EQ(ref.grads.size(), 4u);  // ln_f weight, bias, head weight (wte when tied), dx
    EXPECT_NEAR(ref.eval_loss, ref.loss, 1e-12 * ref.loss);
    for (int chunk : {1, 2, 5, 8, 36, 37, 64}) {
      SCOPED_TRACE(std::string(tied ? "tied" : "untied") + ", loss_chunk " +
                   std::to_string(chunk));
      const auto got = f.run(chunk);
      const double lrel = std::abs(got.loss - ref.loss) / ref.loss;
      EXPECT_LE(lrel, kRel);
      EXPECT_LE(std::abs(got.eval_loss - ref.loss) / ref.loss, kRel) << "forward-only path";
      worst_loss = std::max(worst_loss, lrel);
      for (size_t g = 0; g < ref.grads.size(); ++g) {
        const Diff d = diff(got.grads[g].second, ref.grads[g].second);
        EXPECT_LE(d.norm_rel, kRel) << ref.grads[g].first;
        EXPECT_LE(d.max_rel, kRel) << ref.grads[g].first;
        worst_norm = std::max(worst_norm, d.norm_rel);
        worst_max = std::max(worst_max, d.max_rel);
      }
    }
  }
  std::printf("[ chunked  ] worst vs unchunked: loss %.2e relative; gradients %.2e norm-relative, "
              "%.2e of max element\n", worst_loss, worst_norm, worst_max);
}

// An independent reference: the whole head in double on the host.
TEST(ChunkedLoss, MatchesDoublePrecisionReference) {
  const int64_t N = 37;
  for (bool tied : {true, false}) {
    HeadFixture f(tied, N);
    const auto got = f.run(5);
    const ModelConfig& c = f.cfg;
    const int64_t C = c.d_model, V = c.vocab_size;
    const auto x = to_host(f.x), g = to_host(f.store->param("head.ln_f.weight")),
               b = to_host(f.store->param("head.ln_f.bias")),
               w = to_host(f.store->param(tied ? Embedding::kTokenTable : LmHead::kUntiedWeight));
    const auto t = to_host_i32(f.targets);
    const double dloss = 1.0f / static_cast<float>(N);  // as run() passes it
    std::vector<double> dg(C, 0), db(C, 0), dw(V * C, 0), dx(N * C, 0);
    double loss = 0;
    for (int64_t i = 0; i < N; ++i) {
      const float* xi = &x[i * C];
      double m = 0, var = 0;
      for (int64_t k = 0; k < C; ++k) m += xi[k];
      m /= C;
      for (int64_t k = 0; k < C; ++k) var += (xi[k] - m) * (xi[k] - m);
      const double rs = 1 / std::sqrt(var / C + c.ln_eps);
      std::vector<double> xh(C), y(C), z(V), dy(C, 0);
      for (int64_t k = 0; k < C; ++k) xh[k] = (xi[k] - m) * rs, y[k] = xh[k] * g[k] + b[k];
      double mx = -1e300, s = 0;
      for (int64_t v = 0; v < V; ++v) {
        z[v] = 0;
        for (int64_t k = 0; k < C; ++k) z[v] += y[k] * w[v * C + k];
        mx = std::max(mx, z[v]);
      }
      for (int64_t v = 0; v < V; ++v) s += std::exp(z[v] - mx);
      loss += mx + std::log(s) - z[t[i]];
      for (int64_t v = 0; v < V; ++v) {
        const double dz = (std::exp(z[v] - mx) / s - (v == t[i])) * dloss;
        for (int64_t k = 0; k < C; ++k) dw[v * C + k] += dz * y[k], dy[k] += dz * w[v * C + k];
      }
      double mg = 0, mgx = 0;
      for (int64_t k = 0; k < C; ++k) {
        dg[k] += dy[k] * xh[k], db[k] += dy[k];
        mg += dy[k] * g[k] / C, mgx += dy[k] * g[k] * xh[k] / C;
      }
      for (int64_t k = 0; k < C; ++k) dx[i * C + k] = rs * (dy[k] * g[k] - mg - xh[k] * mgx);
    }
    SCOPED_TRACE(tied ? "tied" : "untied");
    EXPECT_NEAR(got.loss, loss, 1e-6 * loss);
    for (const auto& [name, grad] : got.grads) {
      const std::vector<double>& want = name == "dx"                 ? dx
                                        : name == "head.ln_f.weight" ? dg
                                        : name == "head.ln_f.bias"   ? db
                                                                     : dw;
      ASSERT_EQ(grad.size(), want.size()) << name;
      // fp32 LayerNorm/GEMM against double: ~1e-7 of the tensor's norm; 1e-5 asserted.
      EXPECT_LE(diff(grad, std::vector<float>(want.begin(), want.end())).norm_rel, 1e-5) << name;
    }
  }
}

// Chunking must not change what the gradients are: finite differences through a chunked head.
TEST(ChunkedLoss, FiniteDifferences) {
  for (bool tied : {true, false}) {
    HeadFixture f(tied, 10);
    ModelConfig c = f.cfg;
    c.loss_chunk = 3;
    LmHead head(*f.store, c);
    const float dloss = 0.1f;
    auto objective = [&] { return head.forward(f.x, f.targets) * dloss; };
    std::vector<testing::GradSlot> slots;
    std::vector<std::string> names;
    for (const TensorSpec& s : f.store->specs()) {
      if (s.name == "embed.wpe.weight") continue;
      slots.push_back({s.name, f.store->param(s.name)});
      names.push_back(s.name);
    }
    slots.push_back({"x", f.x});
    auto analytic = [&] {
      f.store->zero_grads();
      Tensor dx;
      head.forward_backward(f.x, f.targets, dloss, &dx);
      std::vector<std::vector<float>> g;
      for (const auto& n : names) g.push_back(to_host(f.store->grad(n)));
      g.push_back(to_host(dx));
      return g;
    };
    SCOPED_TRACE(tied ? "tied" : "untied");
    // Same bounds as test_layers.cpp (eps 1e-2, 5e-3 relative).
    for (const auto& r : testing::check_gradients(objective, analytic, slots, 1e-2)) {
      EXPECT_LE(std::abs(r.analytic - r.numeric),
                5e-3 * std::max(std::abs(r.analytic), std::abs(r.numeric)))
          << r.name;
    }
  }
}

// Peak loss-workspace bytes of one call (training or forward-only), and the workspace-tag
// bytes (dx) it leaves; checks the head returns every chunk buffer.
struct Peaks { int64_t loss = 0, workspace = 0; };
Peaks measure(HeadFixture& f, int chunk, bool train) {
  ModelConfig c = f.cfg;
  c.loss_chunk = chunk;
  LmHead head(*f.store, c);
  MemoryAccounting& mem = f.be.memory();
  const int64_t base_loss = mem.current(MemTag::loss_workspace);
  const int64_t base_ws = mem.current(MemTag::workspace);
  mem.reset_peaks();
  Tensor dx;
  if (train) head.forward_backward(f.x, f.targets, 1.0f, &dx);
  else head.forward(f.x, f.targets);
  EXPECT_EQ(mem.current(MemTag::loss_workspace), base_loss) << "chunk buffers not released";
  return {mem.peak(MemTag::loss_workspace) - base_loss, mem.peak(MemTag::workspace) - base_ws};
}

TEST(ChunkedLoss, WorkspaceScalesWithChunkNotTokens) {
  // c = 2: a chunk row holds V logits plus C + 2 LayerNorm values, and V >= C + 2 here.
  constexpr int64_t kC = 2;
  for (int64_t N : {37, 300}) {
    HeadFixture f(true, N);
    const int64_t V = f.cfg.vocab_size;
    const Peaks whole = measure(f, 0, true);
    for (int chunk : {1, 5, 8}) {
      SCOPED_TRACE("N " + std::to_string(N) + ", loss_chunk " + std::to_string(chunk));
      const int64_t bound = kC * chunk * V * 4;
      for (bool train : {true, false}) {
        const Peaks p = measure(f, chunk, train);
        EXPECT_LE(p.loss, bound) << (train ? "training" : "forward-only");
        EXPECT_GT(p.loss, 0);
        EXPECT_EQ(p.loss, 4 * chunk * (V + f.cfg.d_model + 2)) << "independent of N";
      }
      EXPECT_GT(whole.loss, bound) << "unchunked must exceed the chunked bound";
    }
    EXPECT_EQ(whole.loss, 4 * N * (V + f.cfg.d_model + 2));
  }
}

// The head's LayerCost (what the memory table and planner read) equals what it allocates.
TEST(ChunkedLoss, CostDescriptorMatchesAllocator) {
  for (int64_t N : {37, 300}) {
    HeadFixture f(false, N);
    for (int chunk : {0, 1, 8, 37, 64}) {
      SCOPED_TRACE("N " + std::to_string(N) + ", loss_chunk " + std::to_string(chunk));
      ModelConfig c = f.cfg;
      c.loss_chunk = chunk;
      const LayerCost cost = LmHead::cost(c);
      const Peaks p = measure(f, chunk, true);
      EXPECT_EQ(p.loss, cost.loss_workspace_bytes(N));
      EXPECT_EQ(p.workspace, 4 * N * c.d_model);  // dx
      EXPECT_EQ(cost.backward_bytes(N), p.workspace);
    }
  }
}

// A stage's summed cost keeps its one head's chunk buffers (the planner reads the sum).
TEST(ChunkedLoss, StageCostKeepsTheHeadsChunkBuffers) {
  ModelConfig cfg = head_config(true);
  cfg.seq_len = 16;
  for (int chunk : {0, 1, 7, 100000}) {
    cfg.loss_chunk = chunk;
    LayerCost total;
    for (const auto& [name, c] : stage_costs(cfg, StageSlice::whole(cfg))) total += c;
    for (int64_t tokens : {16, 48, 1000}) {
      EXPECT_EQ(total.loss_workspace_bytes(tokens), LmHead::cost(cfg).loss_workspace_bytes(tokens))
          << "loss_chunk " << chunk << ", tokens " << tokens;
    }
  }
}

// Through the model: ModelConfig::loss_chunk reaches the head (training and evaluation).
TEST(ChunkedLoss, WholeModelUnchanged) {
  for (bool tied : {true, false}) {
    ModelConfig cfg = head_config(tied);
    cfg.n_layer = 2;
    cfg.seq_len = 7;
    const int64_t B = 3, N = B * cfg.seq_len;
    std::vector<std::vector<float>> ref;
    double ref_loss = 0, ref_eval = 0;
    for (int chunk : {0, 4, 1}) {
      SCOPED_TRACE(std::string(tied ? "tied" : "untied") + ", loss_chunk " +
                   std::to_string(chunk));
      CpuBackend be;
      cfg.loss_chunk = chunk;
      StageModel model(be, cfg, StageSlice::whole(cfg));
      model.params().initialize(5);
      Tensor tokens = Tensor::empty(be, {N}, DType::i32, MemTag::workspace);
      Tensor targets = Tensor::empty(be, {N}, DType::i32, MemTag::workspace);
      from_host(tokens, random_targets(N, cfg.vocab_size, 1));
      from_host(targets, random_targets(N, cfg.vocab_size, 2));
      model.params().zero_grads();
      be.memory().reset_peaks();
      const double loss = model.forward_backward(tokens, targets, B, 1.0f / N);
      if (chunk > 0) {  // the model's head chunks too
        EXPECT_EQ(be.memory().peak(MemTag::loss_workspace),
                  4 * chunk * (cfg.vocab_size + cfg.d_model + 2));
      }
      const double eval = model.loss_sum(tokens, targets, B);
      std::vector<std::vector<float>> grads;
      for (const TensorSpec& s : model.params().specs()) {
        grads.push_back(to_host(model.params().grad(s.name)));
      }
      if (chunk == 0) {
        ref = grads, ref_loss = loss, ref_eval = eval;
        continue;
      }
      EXPECT_LE(std::abs(loss - ref_loss) / ref_loss, kRel);
      EXPECT_LE(std::abs(eval - ref_eval) / ref_eval, kRel);
      for (size_t g = 0; g < ref.size(); ++g) {
        EXPECT_LE(diff(grads[g], ref[g]).norm_rel, kRel) << model.params().specs()[g].name;
      }
    }
  }
}

}  // namespace
}  // namespace nupipe::runtime
