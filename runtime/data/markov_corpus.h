// markov_corpus.h: the embedded default data, a sparse order-k Markov chain over token ids
// 0..alphabet-1 whose entropy rate (and so the best reachable loss) is known exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/data/data_options.h"

namespace nupipe::runtime {

// Each context (the last `order` symbols) has `branching` distinct successors with random
// Dirichlet(1) weights; a `smoothing` share of the probability is spread uniformly over the
// whole alphabet, so the chain is irreducible and aperiodic:
//   P(x | c) = (1 - smoothing) * w_c(x) + smoothing / alphabet.
// Everything derives from options.seed through splitmix64 (bit-exact on every platform).
// The options are validated by the config; here they are invariants (NUPIPE_CHECK).
class MarkovCorpus {
 public:
  static constexpr uint64_t kTrainStream = 0;
  static constexpr uint64_t kValStream = 1;

  explicit MarkovCorpus(const SyntheticOptions& options);

  const SyntheticOptions& options() const { return options_; }
  int64_t num_contexts() const { return num_contexts_; }

  // Entropy rate in nats/token: sum_c pi(c) H(P(. | c)), pi the stationary distribution over
  // contexts (power iteration to 1e-12 in L1).
  double entropy_rate() const { return entropy_rate_; }

  // H(X_j | X_0 .. X_{j-1}) under the stationary stream, for j >= 1 visible tokens: exact from
  // the stationary joint for j < order, entropy_rate() from j = order on.
  double conditional_entropy(int visible) const;

  // The lowest expected mean cross-entropy on windows of seq_len predictions drawn from the
  // stationary stream: prediction t sees t + 1 tokens, so this is the mean over t of
  // conditional_entropy(t + 1). >= entropy_rate(), equal when order == 1.
  double loss_floor(int seq_len) const;

  // n tokens of stream `stream` (kTrainStream, kValStream, ...), starting from a context drawn
  // from the stationary distribution. Deterministic in (options.seed, stream).
  std::vector<uint16_t> generate(int64_t n, uint64_t stream) const;

  // Mean -ln P(x_t | x_{t-order} .. x_{t-1}) under the true chain over t = order .. n-1.
  double log_loss(const uint16_t* tokens, int64_t n) const;

 private:
  // P(x | context c); contexts are base-alphabet numbers, the newest symbol least significant.
  double prob(int64_t context, int symbol) const;
  void build_chain();
  void compute_stationary();
  void compute_entropies();

  SyntheticOptions options_;
  int64_t num_contexts_ = 0;           // alphabet^order
  std::vector<uint16_t> successors_;   // [context][branching]
  std::vector<double> weights_;        // [context][branching], each row sums to 1
  std::vector<double> stationary_;     // [context]
  std::vector<double> block_entropy_;  // [m]: entropy of m consecutive symbols, m = 0..order
  double entropy_rate_ = 0;
};

}  // namespace nupipe::runtime
