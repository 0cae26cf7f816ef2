// dataset.h: the training and validation token streams a run reads, from token files or
// the embedded synthetic corpus, with a description (and entropy floor) for the log.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/data/batch_sampler.h"
#include "runtime/data/markov_corpus.h"
#include "runtime/data/token_file.h"
#include "launcher/config.h"

namespace nupipe::launcher {

// One stream of tokens: a mapped file or generated tokens held in memory.
class TokenStream {
 public:
  static TokenStream from_file(const std::string& path, int vocab_size);
  static TokenStream from_tokens(std::vector<uint16_t> tokens, std::string name);
  const uint16_t* data() const;
  int64_t size() const;
  const std::string& name() const { return name_; }

 private:
  std::optional<runtime::TokenFile> file_;
  std::vector<uint16_t> tokens_;
  std::string name_;
};

struct Dataset {
  std::unique_ptr<TokenStream> train;
  std::unique_ptr<TokenStream> val;  // null when no validation set is configured
  std::unique_ptr<runtime::MarkovCorpus> corpus;  // when synthetic
  // Lowest reachable mean loss for this seq_len when known (synthetic data), else < 0.
  double loss_floor = -1.0;
  double entropy_rate = -1.0;
};

Dataset load_dataset(const Config& config);

}  // namespace nupipe::launcher
