// test_generate.cpp: generation against the model's loss path: the next-token logits equal
// what the cross-entropy says about each candidate, padding after the last token changes
// nothing, greedy follows the argmax, sampling follows softmax(logits / T) within the top k.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/generate.h"
#include "runtime/stage_model.h"

namespace nupipe::runtime {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.d_model = 32;
  c.n_head = 4;
  c.vocab_size = 61;
  c.seq_len = 16;
  c.init_std = 0.3f;  // logits far from uniform
  return c;
}

std::vector<int32_t> prompt_of(int n, int vocab) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 17 + 5) % vocab);
  return p;
}

// The loss of the whole window when the token after prompt[n-1] is `next`: cross-entropy sums
// over every position, and only position n - 1's target changes with `next`, so
// loss(next = a) - loss(next = b) = logit_b - logit_a at position n - 1.
double window_loss(StageModel& model, const std::vector<int32_t>& prompt, int32_t next,
                   int32_t pad) {
  CpuBackend& be = static_cast<CpuBackend&>(model.backend());
  const int T = model.config().seq_len;
  std::vector<int32_t> tok(T, pad), tgt(T, 0);
  std::copy(prompt.begin(), prompt.end(), tok.begin());
  for (size_t i = 0; i + 1 < prompt.size(); ++i) tgt[i] = prompt[i + 1];
  tgt[prompt.size() - 1] = next;
  Tensor t = Tensor::empty(be, {T}, DType::i32, MemTag::activations);
  Tensor g = Tensor::empty(be, {T}, DType::i32, MemTag::activations);
  from_host(t, tok);
  from_host(g, tgt);
  return model.loss_sum(t, g, 1);
}

// The small model on one stage, one thread, with parameters drawn from `seed`.
struct OneStageModel {
  explicit OneStageModel(uint64_t seed) : model(be, cfg, StageSlice::whole(cfg)) {
    be.set_threads(1);
    model.params().initialize(seed);
  }
  CpuBackend be;
  ModelConfig cfg = small_config();
  StageModel model;
};

TEST(Generate, NextTokenLogitsAgreeWithTheLoss) {
  OneStageModel m(11);
  CpuBackend& be = m.be;
  const ModelConfig& cfg = m.cfg;
  StageModel& model = m.model;
  const std::vector<int32_t> prompt = prompt_of(7, cfg.vocab_size);
  Tensor window = Tensor::zeros(be, {cfg.seq_len}, DType::i32, MemTag::activations);
  std::vector<int32_t> host(cfg.seq_len, 3);
  std::copy(prompt.begin(), prompt.end(), host.begin());
  from_host(window, host);
  const std::vector<float> logits = model.next_token_logits(window, 7);
  ASSERT_EQ(logits.size(), static_cast<size_t>(cfg.vocab_size));
  const double base = window_loss(model, prompt, 0, 3);
  double spread = 0;
  for (int v = 0; v < cfg.vocab_size; ++v) {
    const double from_loss = base - window_loss(model, prompt, v, 3);  // logit_v - logit_0
    EXPECT_NEAR(logits[v] - logits[0], from_loss, 2e-4) << "token " << v;
    spread = std::max(spread, std::abs(from_loss));
  }
  EXPECT_GT(spread, 0.5) << "logits too flat for the comparison to mean anything";

  // Causal: other padding after position 6 gives the same logits, bit for bit.
  std::fill(host.begin() + 7, host.end(), 42);
  from_host(window, host);
  EXPECT_EQ(model.next_token_logits(window, 7), logits);
  // ...but another prompt token does not.
  host[6] = (host[6] + 1) % cfg.vocab_size;
  from_host(window, host);
  EXPECT_NE(model.next_token_logits(window, 7), logits);
}

TEST(Generate, GreedyIsTheArgmaxOfTheLossPathAndDeterministic) {
  OneStageModel m(5);
  const ModelConfig& cfg = m.cfg;
  StageModel& model = m.model;
  SampleOptions greedy;
  greedy.tokens = 24;  // past seq_len: the window slides
  greedy.temperature = 0;
  const std::vector<int32_t> prompt = prompt_of(3, cfg.vocab_size);
  const std::vector<int32_t> out = generate(model, prompt, greedy);
  ASSERT_EQ(out.size(), 24u);
  EXPECT_EQ(generate(model, prompt, greedy), out);
  // Each of the first tokens is the candidate with the lowest loss, found independently.
  std::vector<int32_t> context = prompt;
  for (int i = 0; i < 4; ++i) {
    int32_t best = 0;
    double best_loss = 1e30;
    for (int v = 0; v < cfg.vocab_size; ++v) {
      const double l = window_loss(model, context, v, 0);
      if (l < best_loss) best_loss = l, best = v;
    }
    EXPECT_EQ(out[i], best) << "token " << i;
    context.push_back(out[i]);
  }
  // Sampling: the same seed, the same tokens; another seed, other tokens.
  SampleOptions hot;
  hot.tokens = 24;
  hot.temperature = 1.5;
  hot.seed = 9;
  const std::vector<int32_t> a = generate(model, prompt, hot);
  EXPECT_EQ(generate(model, prompt, hot), a);
  hot.seed = 10;
  EXPECT_NE(generate(model, prompt, hot), a);
}

TEST(Generate, ChooseTokenFollowsSoftmaxWithinTopK) {
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f),
                                     -1e9f};
  SampleRng rng(1);
  EXPECT_EQ(choose_token(logits, 0.0, 0, rng), 3);
  EXPECT_EQ(choose_token(logits, 5.0, 1, rng), 3);  // top-1 is greedy at any temperature
  const int n = 40000;
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++count[choose_token(logits, 1.0, 0, rng)];
  // p = 1/10, 2/10, 3/10, 4/10, 0; 4 standard deviations of a binomial count.
  for (int v = 0; v < 4; ++v) {
    const double p = (v + 1) / 10.0;
    EXPECT_NEAR(count[v], n * p, 4 * std::sqrt(n * p * (1 - p))) << "token " << v;
  }
  EXPECT_EQ(count[4], 0);
  // Temperature 0.5 squares the odds: 1:4:9:16 over 30.
  std::fill(count.begin(), count.end(), 0);
  for (int i = 0; i < n; ++i) ++count[choose_token(logits, 0.5, 0, rng)];
  EXPECT_NEAR(count[3], n * 16.0 / 30, 4 * std::sqrt(n * (16.0 / 30) * (14.0 / 30)));
  // Top-2: only tokens 3 and 2, in the odds 4:3.
  std::fill(count.begin(), count.end(), 0);
  for (int i = 0; i < n; ++i) ++count[choose_token(logits, 1.0, 2, rng)];
  EXPECT_EQ(count[0] + count[1] + count[4], 0);
  EXPECT_NEAR(count[3], n * 4.0 / 7, 4 * std::sqrt(n * (4.0 / 7) * (3.0 / 7)));
}

}  // namespace
}  // namespace nupipe::runtime
