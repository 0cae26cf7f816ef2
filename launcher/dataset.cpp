// dataset.cpp: opening token files or generating the synthetic corpus.
#include "launcher/dataset.h"

namespace nupipe::launcher {

TokenStream TokenStream::from_file(const std::string& path, int vocab_size) {
  TokenStream s;
  s.file_.emplace(path, vocab_size);
  s.name_ = path;
  return s;
}

TokenStream TokenStream::from_tokens(std::vector<uint16_t> tokens, std::string name) {
  TokenStream s;
  s.tokens_ = std::move(tokens);
  s.name_ = std::move(name);
  return s;
}

const uint16_t* TokenStream::data() const { return file_ ? file_->data() : tokens_.data(); }
int64_t TokenStream::size() const {
  return file_ ? file_->size() : static_cast<int64_t>(tokens_.size());
}

Dataset load_dataset(const Config& config) {
  const runtime::DataOptions& d = config.data;
  Dataset ds;
  const bool synthetic_train = d.train == "synthetic", synthetic_val = d.val == "synthetic";
  if (synthetic_train || synthetic_val) {
    ds.corpus = std::make_unique<runtime::MarkovCorpus>(d.synthetic);
    ds.entropy_rate = ds.corpus->entropy_rate();
    ds.loss_floor = ds.corpus->loss_floor(config.model.seq_len);
  }
  auto open = [&](const std::string& spec, int64_t n, uint64_t stream, const char* what) {
    if (spec == "synthetic") {
      return std::make_unique<TokenStream>(TokenStream::from_tokens(
          ds.corpus->generate(n, stream), std::string("synthetic ") + what + " stream"));
    }
    return std::make_unique<TokenStream>(TokenStream::from_file(spec, config.model.vocab_size));
  };
  ds.train = open(d.train, d.synthetic.train_tokens, 0, "train");
  if (!d.val.empty()) ds.val = open(d.val, d.synthetic.val_tokens, 1, "validation");
  if (!synthetic_train) {  // the floor describes the synthetic corpus only
    ds.loss_floor = ds.entropy_rate = -1.0;
  }
  return ds;
}

}  // namespace nupipe::launcher
