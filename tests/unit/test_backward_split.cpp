// test_backward_split.cpp: the backward in two passes (StageModel::backward_input, then
// backward_weight) against the fused backward: bitwise gradients and input gradients, memory.
//
// Every comparison is memcmp on fp32 host copies (bf16 tensors widen exactly), over slices a
// pipeline cuts (whole model, first, middle, last, head or embedding alone), fp32 and bf16,
// fused and unfused attention, tied and untied embeddings, recompute, a chunked loss, and
// several microbatches accumulating in the store. The weight_inputs tag is checked against the
// cost descriptors to the byte, and the workspace peaks against the fused backward's.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"
#include "tests/unit/backends.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

struct Variant {
  DType dtype = DType::f32;
  bool fused_attention = true;
  bool tied = true;
  int recompute = 0;  // blocks of the slice that recompute (capped at the slice's blocks)
  int loss_chunk = 0;
  bool llama = false;  // the llama family (grouped-query attention, 2 query heads per kv head)
  bool lfa = false;    // with Yuan 2.0's localized filtering (multi-head)
};

std::string describe(const Variant& v, const StageSlice& s) {
  std::ostringstream o;
  o << (v.llama ? "llama " : "") << (v.lfa ? "lfa " : "") << dtype_name(v.dtype) << (v.fused_attention ? " fused" : " unfused") << " attention, "
    << (v.tied ? "tied" : "untied") << ", recompute " << v.recompute << ", loss_chunk "
    << v.loss_chunk << ", slice [" << s.layer_begin << ", " << s.layer_end << ")"
    << (s.embedding ? " +embedding" : "") << (s.head ? " +head" : "");
  return o.str();
}

ModelConfig config(const Variant& v) {
  ModelConfig c;
  c.n_layer = 3;
  c.d_model = 32;
  c.n_head = 4;
  c.vocab_size = 61;
  c.seq_len = 16;
  c.init_std = 0.1f;
  c.dtype = v.dtype;
  c.fused_attention = v.fused_attention;
  c.tie_embeddings = v.tied;
  c.loss_chunk = v.loss_chunk;
  if (v.llama) {
    c.family = "llama";
    c.n_kv_head = v.lfa ? 4 : 2;
    c.ffn_hidden = 40;
    c.lfa = v.lfa;
  }
  return c;
}

std::vector<StageSlice> slices() {
  return {{0, 3, true, true},    // the whole model
          {0, 2, true, false},   // first stage
          {1, 2, false, false},  // middle stage
          {2, 3, false, true},   // last stage
          {3, 3, false, true},   // the head alone
          {0, 0, true, false}};  // the embedding alone
}

constexpr int64_t kBatch = 2;  // sequences per microbatch

// One microbatch's inputs, distinct per microbatch.
struct Inputs {
  Tensor input, targets, dhidden;  // dhidden: when the slice has no head
};

Inputs make_inputs(Backend& be, const ModelConfig& cfg, const StageSlice& s, int mb) {
  const int64_t N = kBatch * cfg.seq_len, C = cfg.d_model;
  Inputs in;
  std::vector<int32_t> tok(N), tgt(N);
  for (int64_t i = 0; i < N; ++i) {
    tok[i] = static_cast<int32_t>((i * 13 + 5 + 7 * mb) % cfg.vocab_size);
    tgt[i] = static_cast<int32_t>((i * 29 + 1 + 11 * mb) % cfg.vocab_size);
  }
  if (s.embedding) {
    in.input = Tensor::empty(be, {N}, DType::i32, MemTag::workspace);
    from_host(in.input, tok);
  } else {
    in.input = Tensor::empty(be, {N, C}, cfg.dtype, MemTag::activations);
    from_host(in.input, nupipe::testing::random_values(N * C, 100 + mb));
  }
  if (s.head) {
    in.targets = Tensor::empty(be, {N}, DType::i32, MemTag::workspace);
    from_host(in.targets, tgt);
  } else {
    in.dhidden = Tensor::empty(be, {N, C}, cfg.dtype, MemTag::workspace);
    from_host(in.dhidden, nupipe::testing::random_values(N * C, 200 + mb, 0.05f));
  }
  return in;
}

// How the head runs in the forward action: deferred and at_once for split runs (fused runs
// use head_forward_backward); always_deferred uses head_forward_input in fused runs too.
enum class Head { deferred, at_once, always_deferred };

struct Outcome {
  std::vector<float> grads;                // the store's flat fp32 gradients
  std::vector<std::vector<float>> dinput;  // per microbatch, when the slice has no embedding
  std::vector<double> loss;                // per microbatch, when it has the head
};

// Runs `order` ("F0 F1 B0 B1 W0 W1"; X = the fused backward) on a fresh model.
// F: forward, then the head (fused head_forward_backward for X runs and Head::at_once,
// head_forward_input for Head::deferred); B: backward_input; W: backward_weight.
Outcome run(const Variant& v, const StageSlice& slice, const std::string& order,
            Head head = Head::deferred, int microbatches = 2, int threads = 1) {
  CpuBackend be;
  be.set_threads(threads);
  const ModelConfig cfg = config(v);
  const int blocks = slice.layer_end - slice.layer_begin;
  StageModel model(be, cfg, slice, 1, std::min(v.recompute, blocks));
  model.params().initialize(7);
  model.params().zero_grads();
  const bool fused = order.find('X') != std::string::npos;
  std::vector<StageModel::Pass> passes(microbatches);
  std::vector<Tensor> dh(microbatches);
  Outcome out;
  out.dinput.resize(microbatches);
  out.loss.assign(microbatches, 0.0);
  std::istringstream ops(order);
  for (std::string op; ops >> op;) {
    const int mb = std::stoi(op.substr(1));
    StageModel::Pass& pass = passes.at(mb);
    if (op[0] == 'F') {
      Inputs in = make_inputs(be, cfg, slice, mb);
      model.forward(pass, in.input, kBatch);
      if (!slice.head) {
        dh[mb] = in.dhidden;
      } else if ((fused && head != Head::always_deferred) || head == Head::at_once) {
        out.loss[mb] = model.head_forward_backward(pass, in.targets, 0.5f / cfg.seq_len, dh[mb]);
      } else {
        out.loss[mb] = model.head_forward_input(pass, in.targets, 0.5f / cfg.seq_len, dh[mb]);
      }
      continue;
    }
    if (op[0] == 'W') {
      model.backward_weight(pass);
      continue;
    }
    const Tensor d =
        op[0] == 'X' ? model.backward(pass, dh[mb]) : model.backward_input(pass, dh[mb]);
    dh[mb] = {};
    EXPECT_EQ(d.defined(), !slice.embedding) << op;
    if (d.defined()) out.dinput[mb] = to_host(d);
  }
  out.grads = to_host(model.params().flat_grads());
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  // memcmp of empty vectors would get null pointers (undefined even for 0 bytes)
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void expect_equal(const Outcome& split, const Outcome& fused, const std::string& what) {
  EXPECT_TRUE(same_bits(split.grads, fused.grads)) << what << ": parameter gradients differ";
  ASSERT_EQ(split.dinput.size(), fused.dinput.size());
  for (size_t m = 0; m < fused.dinput.size(); ++m) {
    EXPECT_TRUE(same_bits(split.dinput[m], fused.dinput[m]))
        << what << ": d(input) of microbatch " << m << " differs";
    EXPECT_EQ(split.loss[m], fused.loss[m]) << what << ": loss of microbatch " << m;
  }
}

bool any_nonzero(const std::vector<float>& v) {
  for (float x : v) {
    if (x != 0.0f) return true;
  }
  return false;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (DType dt : {DType::f32, DType::bf16}) {
    for (bool fa : {true, false}) {
      for (bool tied : {true, false}) {
        for (int rc : {0, 3}) {
          for (int chunk : {0, 13}) out.push_back({dt, fa, tied, rc, chunk});
        }
      }
    }
  }
  return out;
}

// The llama family: both precisions and attentions, tied and untied, each once plain and once
// with recompute and a chunked loss (the paths the model shares with GPT-2 are covered above).
std::vector<Variant> llama_variants() {
  std::vector<Variant> out;
  for (DType dt : {DType::f32, DType::bf16}) {
    for (bool fa : {true, false}) {
      for (bool tied : {true, false}) {
        out.push_back({dt, fa, tied, 0, 0, true});
        out.push_back({dt, fa, tied, 3, 13, true});
      }
    }
  }
  return out;
}

// Yuan's localized filtering on the llama block, in the same paths.
std::vector<Variant> yuan_variants() {
  std::vector<Variant> out;
  for (DType dt : {DType::f32, DType::bf16}) {
    for (bool fa : {true, false}) {
      out.push_back({dt, fa, false, 0, 0, true, true});
      out.push_back({dt, fa, true, 3, 13, true, true});
    }
  }
  return out;
}

const char* kFused = "F0 X0 F1 X1";

// The layer kernels the split adds are the fused kernel's two halves, bit for bit, on every
// backend built (LayerNorm is the only layer whose backward was one kernel).
class SplitKernels : public ::testing::TestWithParam<testing::BackendCase> {};

TEST_P(SplitKernels, LayerNormPartsAreTheFusedKernel) {
  if (const std::string why = testing::unavailable_reason(GetParam()); !why.empty()) {
    GTEST_SKIP() << why;
  }
  std::unique_ptr<Backend> be = GetParam().make();
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t N = 300, C = 40;  // more than one row chunk of the cuda column sums
    auto make = [&](Shape shape, DType d, uint64_t seed, float scale = 1.0f) {
      Tensor t = Tensor::empty(*be, shape, d, MemTag::workspace);
      from_host(t, nupipe::testing::random_values(numel(shape), seed, scale));
      return t;
    };
    const Tensor x = make({N, C}, dt, 1), w = make({C}, dt, 2), dout = make({N, C}, dt, 3);
    Tensor mean = make({N}, DType::f32, 4), rstd = make({N}, DType::f32, 5);
    Tensor tmp = make({N, C}, dt, 6);
    be->layernorm_forward(tmp.data(), mean.f32(), rstd.f32(), x.data(), w.data(), w.data(), N, C,
                          1e-5f);
    Tensor dx1 = make({N, C}, dt, 7), dx2 = make({N, C}, dt, 8);
    Tensor dw1 = make({C}, DType::f32, 9), db1 = make({C}, DType::f32, 10);
    Tensor dw2 = make({C}, DType::f32, 9), db2 = make({C}, DType::f32, 10);  // same start
    be->layernorm_backward(dx1.data(), dw1.f32(), db1.f32(), dout.data(), x.data(), w.data(),
                           mean.f32(), rstd.f32(), N, C);
    be->layernorm_backward_input(dx2.data(), dout.data(), x.data(), w.data(), mean.f32(),
                                 rstd.f32(), N, C);
    be->layernorm_backward_weight(dw2.f32(), db2.f32(), dout.data(), x.data(), mean.f32(),
                                  rstd.f32(), N, C);
    EXPECT_TRUE(same_bits(to_host(dx2), to_host(dx1))) << "dx";
    EXPECT_TRUE(same_bits(to_host(dw2), to_host(dw1))) << "dw";
    EXPECT_TRUE(same_bits(to_host(db2), to_host(db1))) << "db";
    EXPECT_FALSE(same_bits(to_host(dw1), to_host(make({C}, DType::f32, 9)))) << "dw unchanged";
  }
}

INSTANTIATE_TEST_SUITE_P(, SplitKernels, ::testing::ValuesIn(testing::compiled_backends()),
                         [](const auto& info) { return info.param.name; });

// B then W equals the fused backward bitwise, every variant and slice, with all B before any
// W (as zero-bubble schedules run them) and with B and W interleaved with forwards.
void expect_split_equals_fused(const std::vector<Variant>& vs) {
  for (const Variant& v : vs) {
    for (const StageSlice& s : slices()) {
      const std::string what = describe(v, s);
      const Outcome fused = run(v, s, kFused);
      ASSERT_TRUE(any_nonzero(fused.grads)) << what;
      expect_equal(run(v, s, "F0 F1 B0 B1 W0 W1"), fused, what + ", F0 F1 B0 B1 W0 W1");
      expect_equal(run(v, s, "F0 B0 F1 W0 B1 W1"), fused, what + ", F0 B0 F1 W0 B1 W1");
    }
  }
}

TEST(BackwardSplit, EqualsFusedBitwise) { expect_split_equals_fused(variants()); }
TEST(BackwardSplit, LlamaEqualsFusedBitwise) { expect_split_equals_fused(llama_variants()); }
TEST(BackwardSplit, YuanEqualsFusedBitwise) { expect_split_equals_fused(yuan_variants()); }

// Also with the kernels' threads: the column sums' per-thread partials and the GEMMs split the
// same way in B, in W and in the fused backward.
TEST(BackwardSplit, EqualsFusedBitwiseWithTwoThreads) {
  for (const Variant& v : variants()) {  // fp32 and bf16; the rest is covered above
    if (v.recompute != 0 || v.loss_chunk == 0 || !v.fused_attention || !v.tied) continue;
    const StageSlice s{0, 3, true, true};
    const std::string what = describe(v, s) + ", 2 threads";
    expect_equal(run(v, s, "F0 F1 B0 B1 W0 W1", Head::deferred, 2, 2),
                 run(v, s, kFused, Head::deferred, 2, 2), what);
  }
}

// The head's weight gradients at once (head_forward_backward) with the blocks' split: equal
// wherever the store's accumulation order is the fused one. (On a slice holding both a tied
// token table's uses, the head's gradient of microbatch 1 would come before the embedding's
// of microbatch 0 with all B before W: that order is not the fused one, so W0 runs first.)
TEST(BackwardSplit, HeadAtOnceEqualsFusedBitwise) {
  for (const Variant& v : variants()) {
    if (v.recompute != 0) continue;  // recompute is covered above; the head is what differs
    for (const StageSlice& s : slices()) {
      if (!s.head) continue;
      const std::string what = describe(v, s) + ", head at once";
      const Outcome fused = run(v, s, kFused);
      const bool both = s.embedding && v.tied;
      expect_equal(run(v, s, both ? "F0 B0 W0 F1 B1 W1" : "F0 F1 B0 B1 W0 W1", Head::at_once),
                   fused, what);
    }
  }
}

// The fused backward of a pass whose head deferred its weight gradients runs them first: the
// same gradients as the fused head.
TEST(BackwardSplit, FusedBackwardAfterDeferredHeadEqualsFused) {
  for (const Variant& v : variants()) {
    if (v.recompute != 0) continue;
    for (const StageSlice& s : slices()) {
      if (!s.head) continue;
      expect_equal(run(v, s, kFused, Head::always_deferred), run(v, s, kFused),
                   describe(v, s) + ", head_forward_input then backward");
    }
  }
}

// The comparison can fail: three microbatches' weight passes in reverse order accumulate the
// same gradients in another order, and the bits differ (while a plain W0 W1 W2 is equal).
TEST(BackwardSplit, ReversedWeightOrderIsNotBitwiseFused) {
  const Variant v;
  const StageSlice s{0, 3, true, true};
  const Outcome fused = run(v, s, "F0 X0 F1 X1 F2 X2", Head::deferred, 3);
  const Outcome same = run(v, s, "F0 F1 F2 B0 B1 B2 W0 W1 W2", Head::deferred, 3);
  const Outcome reversed = run(v, s, "F0 F1 F2 B0 B1 B2 W2 W1 W0", Head::deferred, 3);
  EXPECT_TRUE(same_bits(same.grads, fused.grads));
  EXPECT_FALSE(same_bits(reversed.grads, fused.grads))
      << "reversing the weight passes left every gradient bit unchanged: the bitwise "
         "comparisons above could not see a wrong accumulation order";
}

// After B, the weight_inputs tag holds exactly what the slice's descriptors say W holds
// (weight_bytes), the activations are released as the fused backward releases them, and W
// frees all of it. With two microbatches pending, twice that.
void expect_weight_inputs_as_described(const std::vector<Variant>& vs) {
  for (const Variant& v : vs) {
    for (const StageSlice& s : slices()) {
      const std::string what = describe(v, s);
      CpuBackend be;
      const ModelConfig cfg = config(v);
      StageModel model(be, cfg, s, 1, std::min(v.recompute, s.layer_end - s.layer_begin));
      model.params().initialize(3);
      const int64_t N = kBatch * cfg.seq_len;
      int64_t predicted = 0, head = 0;
      for (const auto& [name, c] : stage_costs(cfg, s)) {
        predicted += c.weight_bytes(N);
        if (name == "head") head = c.weight_bytes(N);
      }
      // The head's forward keeps its input x as it is (an activation until B takes it over).
      const int64_t head_f = s.head ? head - static_cast<int64_t>(dtype_size(cfg.dtype)) *
                                                 cfg.d_model * N
                                    : 0;
      auto held = [&] { return be.memory().current(MemTag::weight_inputs); };
      const int64_t acts = be.memory().current(MemTag::activations);
      StageModel::Pass p[2];
      Tensor dh[2];
      for (int mb = 0; mb < 2; ++mb) {
        Inputs in = make_inputs(be, cfg, s, mb);
        model.forward(p[mb], in.input, kBatch);
        if (s.head) model.head_forward_input(p[mb], in.targets, 1.0f / N, dh[mb]);
        else dh[mb] = in.dhidden;
        EXPECT_EQ(held(), (mb + 1) * head_f) << what << ": after forward " << mb;
      }
      for (int mb = 0; mb < 2; ++mb) {
        model.backward_input(p[mb], dh[mb]);
        dh[mb] = {};
        EXPECT_EQ(held(), (mb + 1) * predicted + (mb == 0 ? head_f : 0)) << what << ": B" << mb;
      }
      EXPECT_EQ(be.memory().current(MemTag::activations), acts) << what << ": activations kept";
      model.backward_weight(p[0]);
      EXPECT_EQ(held(), predicted) << what << ": after W0";
      model.backward_weight(p[1]);
      EXPECT_EQ(held(), 0) << what << ": after W1";
      EXPECT_EQ(be.memory().peak(MemTag::weight_inputs), 2 * predicted) << what;
    }
  }
}

TEST(BackwardSplit, WeightInputsAreWhatTheDescriptorsSay) {
  expect_weight_inputs_as_described(variants());
}
TEST(BackwardSplit, LlamaWeightInputsAreWhatTheDescriptorsSay) {
  expect_weight_inputs_as_described(llama_variants());
}
TEST(BackwardSplit, YuanWeightInputsAreWhatTheDescriptorsSay) {
  expect_weight_inputs_as_described(yuan_variants());
}

// B reaches the fused backward's workspace peak exactly (so its descriptor, checked in
// test_layers.cpp, holds for B too); the head's forward reaches the fused head's workspace and
// loss_workspace peaks; W allocates neither workspace nor activations, and only the head's
// chunk buffers (its loss_workspace descriptor) for the head.
void expect_fused_workspace_peaks(const std::vector<Variant>& vs) {
  for (const Variant& v : vs) {
    for (const StageSlice& s : slices()) {
      const std::string what = describe(v, s);
      CpuBackend be;
      const ModelConfig cfg = config(v);
      StageModel model(be, cfg, s, 1, std::min(v.recompute, s.layer_end - s.layer_begin));
      model.params().initialize(3);
      const int64_t N = kBatch * cfg.seq_len;
      auto peaks = [&](const auto& step) {  // workspace, loss_workspace peaks above the start
        const int64_t ws = be.memory().current(MemTag::workspace);
        const int64_t lw = be.memory().current(MemTag::loss_workspace);
        be.memory().reset_peaks();
        step();
        return std::pair<int64_t, int64_t>{be.memory().peak(MemTag::workspace) - ws,
                                           be.memory().peak(MemTag::loss_workspace) - lw};
      };
      std::pair<int64_t, int64_t> head_peak[2], back_peak[2];
      for (int split = 0; split < 3; ++split) {  // fused once to warm up (oneDNN's arena)
        const bool sp = split == 2;
        Inputs in = make_inputs(be, cfg, s, 0);
        StageModel::Pass pass;
        Tensor dh = in.dhidden;
        model.forward(pass, in.input, kBatch);
        const auto hp = peaks([&] {
          if (!s.head) return;
          if (sp) model.head_forward_input(pass, in.targets, 1.0f / N, dh);
          else model.head_forward_backward(pass, in.targets, 1.0f / N, dh);
        });
        in = {};
        const auto bp = peaks([&] {
          if (sp) model.backward_input(pass, dh);
          else model.backward(pass, dh);
        });
        if (split > 0) head_peak[sp] = hp, back_peak[sp] = bp;
        if (!sp) continue;
        dh = {};
        const int64_t acts = be.memory().current(MemTag::activations);
        const auto wp = peaks([&] { model.backward_weight(pass); });
        EXPECT_EQ(wp.first, 0) << what << ": W allocated workspace";
        EXPECT_EQ(be.memory().peak(MemTag::activations), acts) << what << ": W allocated "
                                                                   "activations";
        EXPECT_EQ(wp.second, s.head ? LmHead::cost(cfg).loss_workspace_bytes(N) : 0) << what;
      }
      EXPECT_EQ(head_peak[1], head_peak[0]) << what << ": head forward's peaks";
      EXPECT_EQ(back_peak[1].first, back_peak[0].first) << what << ": backward's workspace peak";
      EXPECT_EQ(back_peak[1].second, 0) << what;
    }
  }
}

TEST(BackwardSplit, WorkspacePeaksAreTheFusedOnes) { expect_fused_workspace_peaks(variants()); }
TEST(BackwardSplit, LlamaWorkspacePeaksAreTheFusedOnes) {
  expect_fused_workspace_peaks(llama_variants());
}
TEST(BackwardSplit, YuanWorkspacePeaksAreTheFusedOnes) {
  expect_fused_workspace_peaks(yuan_variants());
}

// Misuse is refused with a message, not silently mixed up.
TEST(BackwardSplit, PassMisuseIsRefused) {
  CpuBackend be;
  const Variant v;
  const StageSlice s{1, 2, false, false};
  const ModelConfig cfg = config(v);
  StageModel model(be, cfg, s);
  model.params().initialize(3);
  Inputs in = make_inputs(be, cfg, s, 0);
  StageModel::Pass pass;
  EXPECT_ANY_THROW(model.backward_weight(pass));  // no B yet
  model.forward(pass, in.input, kBatch);
  model.backward_input(pass, in.dhidden);
  EXPECT_ANY_THROW(model.backward_input(pass, in.dhidden));  // B twice
  EXPECT_ANY_THROW(model.backward(pass, in.dhidden));        // fused over a pending W
  EXPECT_ANY_THROW(model.forward(pass, in.input, kBatch));   // the pass is still W's
  model.backward_weight(pass);
  EXPECT_EQ(be.memory().current(MemTag::weight_inputs), 0);
}

}  // namespace
}  // namespace nupipe::runtime
