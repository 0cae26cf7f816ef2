// generate.cpp: the generation loop (a seq_len window, padded after the last real token, run
// through the model's own forward and head) and the choice of each token.
#include "runtime/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/backend.h"
#include "runtime/check.h"

namespace nupipe::runtime {

int32_t choose_token(const std::vector<float>& logits, double temperature, int top_k,
                     SampleRng& rng) {
  const int64_t V = static_cast<int64_t>(logits.size());
  NUPIPE_CHECK(V > 0 && temperature >= 0 && top_k >= 0, "choose_token: bad arguments");
  if (temperature == 0.0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = top_k > 0 ? std::min<int64_t>(top_k, V) : V;
  auto higher = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), higher);
  order.resize(static_cast<size_t>(k));
  const double top = logits[order[0]];
  std::vector<double> p(order.size());
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    p[i] = std::exp((logits[order[i]] - top) / temperature);
    sum += p[i];
  }
  const double u = rng.uniform() * sum;
  double acc = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    acc += p[i];
    if (u < acc) return order[i];
  }
  return order.back();  // u rounded up to sum
}

std::vector<int32_t> generate(const StageModel& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& options) {
  const ModelConfig& cfg = model.config();
  NUPIPE_CHECK(!prompt.empty(), "generate: an empty prompt");
  const int64_t T = cfg.seq_len;
  std::vector<int32_t> all = prompt, out;
  SampleRng rng(options.seed);
  Tensor window = Tensor::zeros(model.backend(), {T}, DType::i32, MemTag::activations);
  std::vector<int32_t> host(static_cast<size_t>(T), 0);
  for (int i = 0; i < options.tokens; ++i) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(all.size()), T);
    std::fill(host.begin(), host.end(), 0);  // padding after position n - 1 (never seen)
    std::copy(all.end() - n, all.end(), host.begin());
    from_host(window, host);
    const int32_t next =
        choose_token(model.next_token_logits(window, n), options.temperature, options.top_k,
                     rng);
    all.push_back(next);
    out.push_back(next);
  }
  return out;
}

}  // namespace nupipe::runtime
