// markov_corpus.cpp: building the sparse order-k chain from its seed, its stationary
// distribution and exact entropies, and generating token streams from it.
#include "runtime/data/markov_corpus.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/splitmix.h"

namespace nupipe::runtime {

namespace {

constexpr int64_t kMaxContexts = int64_t{1} << 22;
constexpr double kStationaryTolerance = 1e-12;  // L1 change between power iterations
constexpr int kMaxPowerIterations = 100000;
// Domain tags, so the chain and each stream draw from unrelated sequences.
constexpr uint64_t kChainTag = 0x636861696e000001ULL;
constexpr uint64_t kStreamTag = 0x73747265616d0002ULL;

double plogp(double p) { return p > 0 ? p * std::log(p) : 0.0; }

}  // namespace

MarkovCorpus::MarkovCorpus(const SyntheticOptions& options) : options_(options) {
  const SyntheticOptions& o = options_;
  NUPIPE_CHECK(o.order >= 1, "synthetic.order must be >= 1, got " + std::to_string(o.order));
  NUPIPE_CHECK(o.alphabet >= 2 && o.alphabet <= 65536,
               "synthetic.alphabet must be in [2, 65536], got " + std::to_string(o.alphabet));
  NUPIPE_CHECK(o.branching >= 1 && o.branching <= o.alphabet,
               "synthetic.branching must be in [1, alphabet], got " + std::to_string(o.branching));
  NUPIPE_CHECK(o.smoothing > 0 && o.smoothing <= 1,
               "synthetic.smoothing must be in (0, 1], got " + std::to_string(o.smoothing));
  num_contexts_ = 1;
  for (int i = 0; i < o.order; ++i) {
    num_contexts_ *= o.alphabet;
    NUPIPE_CHECK(num_contexts_ <= kMaxContexts,
                 "synthetic.alphabet^order exceeds 2^22 contexts (alphabet " +
                     std::to_string(o.alphabet) + ", order " + std::to_string(o.order) + ")");
  }
  build_chain();
  compute_stationary();
  compute_entropies();
}

void MarkovCorpus::build_chain() {
  const int A = options_.alphabet;
  const int B = options_.branching;
  SplitMix64 rng(mix64(options_.seed ^ kChainTag));
  successors_.resize(static_cast<size_t>(num_contexts_) * B);
  weights_.resize(static_cast<size_t>(num_contexts_) * B);
  std::vector<uint8_t> taken(A, 0);
  for (int64_t c = 0; c < num_contexts_; ++c) {
    uint16_t* succ = &successors_[c * B];
    double* w = &weights_[c * B];
    // Floyd's algorithm: B distinct symbols out of A in O(B) draws.
    int k = 0;
    for (int j = A - B; j < A; ++j) {
      int t = static_cast<int>(rng.below(static_cast<uint64_t>(j) + 1));
      if (taken[t]) t = j;
      taken[t] = 1;
      succ[k++] = static_cast<uint16_t>(t);
    }
    for (int i = 0; i < B; ++i) taken[succ[i]] = 0;
    // Dirichlet(1, ..., 1) weights: normalised standard exponentials.
    double sum = 0;
    for (int i = 0; i < B; ++i) sum += (w[i] = -std::log(rng.uniform_open()));
    for (int i = 0; i < B; ++i) w[i] /= sum;
  }
}

void MarkovCorpus::compute_stationary() {
  const int A = options_.alphabet;
  const int B = options_.branching;
  const double s = options_.smoothing;
  const int64_t C = num_contexts_;
  const int64_t tails = C / A;  // contexts sharing their newest order-1 symbols
  std::vector<double> pi(C, 1.0 / static_cast<double>(C)), next(C), tail_mass(tails);
  for (int iter = 0;; ++iter) {
    if (iter == kMaxPowerIterations) {
      throw usage_error("synthetic corpus: the stationary distribution did not converge in " +
                            std::to_string(kMaxPowerIterations) + " power iterations",
                        "raise data.synthetic.smoothing (the chain mixes too slowly)");
    }
    std::fill(next.begin(), next.end(), 0.0);
    std::fill(tail_mass.begin(), tail_mass.end(), 0.0);
    // Context c followed by symbol x becomes (c mod A^(order-1)) * A + x.
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = (c % tails) * A;
      tail_mass[c % tails] += pi[c];
      const double m = pi[c] * (1 - s);
      for (int i = 0; i < B; ++i) next[base + successors_[c * B + i]] += m * weights_[c * B + i];
    }
    // The uniform share: every successor of tail t gets s/A of the mass ending in t.
    double total = 0;
    for (int64_t c = 0; c < C; ++c) total += (next[c] += s / A * tail_mass[c / A]);
    double change = 0;
    for (int64_t c = 0; c < C; ++c) {
      next[c] /= total;  // keep the sum at 1 against rounding drift
      change += std::fabs(next[c] - pi[c]);
    }
    pi.swap(next);
    if (change < kStationaryTolerance) break;
  }
  stationary_ = std::move(pi);
}

void MarkovCorpus::compute_entropies() {
  const int A = options_.alphabet;
  const int B = options_.branching;
  const double s = options_.smoothing;
  // Entropy rate: each context has B symbols at (1-s) w + s/A and A-B at s/A.
  const double floor_p = s / A;
  const double rest = -(A - B) * plogp(floor_p);
  entropy_rate_ = 0;
  for (int64_t c = 0; c < num_contexts_; ++c) {
    double h = rest;
    for (int i = 0; i < B; ++i) h -= plogp((1 - s) * weights_[c * B + i] + floor_p);
    entropy_rate_ += stationary_[c] * h;
  }
  // Block entropies H(X_1..X_m), m <= order: marginals of the stationary context
  // distribution over its newest m symbols (c mod A^m).
  block_entropy_.assign(options_.order + 1, 0.0);
  int64_t bins = 1;
  for (int m = 1; m <= options_.order; ++m) {
    bins *= A;
    std::vector<double> marginal(bins, 0.0);
    for (int64_t c = 0; c < num_contexts_; ++c) marginal[c % bins] += stationary_[c];
    double h = 0;
    for (double p : marginal) h -= plogp(p);
    block_entropy_[m] = h;
  }
}

double MarkovCorpus::conditional_entropy(int visible) const {
  NUPIPE_CHECK(visible >= 1, "conditional_entropy needs at least one visible token");
  if (visible >= options_.order) return entropy_rate_;
  return block_entropy_[visible + 1] - block_entropy_[visible];
}

double MarkovCorpus::loss_floor(int seq_len) const {
  NUPIPE_CHECK(seq_len >= 1, "loss_floor needs seq_len >= 1, got " + std::to_string(seq_len));
  double sum = 0;
  for (int t = 0; t < seq_len; ++t) sum += conditional_entropy(t + 1);
  return sum / seq_len;
}

double MarkovCorpus::prob(int64_t context, int symbol) const {
  const int B = options_.branching;
  const double s = options_.smoothing;
  double p = s / options_.alphabet;
  for (int i = 0; i < B; ++i) {
    if (successors_[context * B + i] == symbol) p += (1 - s) * weights_[context * B + i];
  }
  return p;
}

std::vector<uint16_t> MarkovCorpus::generate(int64_t n, uint64_t stream) const {
  NUPIPE_CHECK(n >= 0, "generate: negative length " + std::to_string(n));
  const int A = options_.alphabet;
  const int B = options_.branching;
  const double s = options_.smoothing;
  const int64_t tails = num_contexts_ / A;
  SplitMix64 rng(mix64(mix64(options_.seed ^ kStreamTag) ^ stream));
  std::vector<uint16_t> out;
  out.reserve(static_cast<size_t>(n));

  // Start from a stationary context, emitted oldest symbol first.
  const double u = rng.uniform_open();
  int64_t c = num_contexts_ - 1;
  double cum = 0;
  for (int64_t i = 0; i < num_contexts_; ++i) {
    cum += stationary_[i];
    if (u < cum) {
      c = i;
      break;
    }
  }
  int64_t place = num_contexts_ / A;
  for (int i = 0; i < options_.order && static_cast<int64_t>(out.size()) < n; ++i, place /= A) {
    out.push_back(static_cast<uint16_t>((c / place) % A));
  }

  while (static_cast<int64_t>(out.size()) < n) {
    int x;
    if (rng.uniform_open() < s) {
      x = static_cast<int>(rng.below(static_cast<uint64_t>(A)));
    } else {
      const double v = rng.uniform_open();
      const double* w = &weights_[c * B];
      int i = 0;
      double acc = w[0];
      while (i < B - 1 && v >= acc) acc += w[++i];
      x = successors_[c * B + i];
    }
    out.push_back(static_cast<uint16_t>(x));
    c = (c % tails) * A + x;
  }
  return out;
}

double MarkovCorpus::log_loss(const uint16_t* tokens, int64_t n) const {
  const int A = options_.alphabet;
  NUPIPE_CHECK(n > options_.order,
               "log_loss needs more than order tokens, got " + std::to_string(n));
  const int64_t tails = num_contexts_ / A;
  int64_t c = 0;
  for (int64_t t = 0; t < n; ++t) {
    NUPIPE_CHECK(tokens[t] < A, "log_loss: token " + std::to_string(tokens[t]) + " at index " +
                                    std::to_string(t) + " is outside the alphabet");
  }
  for (int i = 0; i < options_.order; ++i) c = c * A + tokens[i];
  double sum = 0;
  for (int64_t t = options_.order; t < n; ++t) {
    sum -= std::log(prob(c, tokens[t]));
    c = (c % tails) * A + tokens[t];
  }
  return sum / static_cast<double>(n - options_.order);
}

}  // namespace nupipe::runtime
