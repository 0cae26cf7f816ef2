// batch_sampler.h: (inputs, next-token targets) windows cut from a token stream: stateless
// random windows for training, keyed by (seed, step, sample), and sequential ones for validation.
#pragma once

#include <cstdint>
#include <string>

namespace nupipe::runtime {

// Does not own the tokens (a TokenFile mapping or a generated MarkovCorpus stream); they must
// outlive the sampler. Training windows depend only on (seed, step, sample index within the
// step's global batch), never on how many ranks share the batch or on what came before, so a
// run can resume at any step on any process layout and draw the same data.
class BatchSampler {
 public:
  // Refuses (ExitCode::data, naming source_name) a stream shorter than seq_len + 1 tokens.
  BatchSampler(const uint16_t* tokens, int64_t n_tokens, int seq_len, uint64_t seed,
               std::string source_name);

  int seq_len() const { return seq_len_; }
  int64_t n_tokens() const { return n_tokens_; }
  const std::string& source_name() const { return source_name_; }

  // Start of training window `sample` of step `step`, in [0, n_tokens - seq_len - 1], from a
  // splitmix64 hash of (seed, step, sample). step, sample >= 0.
  int64_t window_offset(int64_t step, int64_t sample) const;

  // Writes samples first_sample .. first_sample + count - 1 of `step`: tokens[i * seq_len + t]
  // = stream[off_i + t] and targets[i * seq_len + t] = stream[off_i + t + 1].
  void fill(int64_t step, int64_t first_sample, int count, int32_t* tokens, int32_t* targets) const;

  // Number of non-overlapping windows, window w starting at w * seq_len: (n_tokens - 1) / seq_len.
  int64_t num_sequential_windows() const { return (n_tokens_ - 1) / seq_len_; }

  // Writes sequential windows window .. window + count - 1 (modulo num_sequential_windows()),
  // laid out as in fill(). For validation: the same windows every pass.
  void fill_sequential(int64_t window, int count, int32_t* tokens, int32_t* targets) const;

 private:
  void copy_window(int64_t offset, int32_t* tokens, int32_t* targets) const;

  const uint16_t* tokens_;
  int64_t n_tokens_;
  int seq_len_;
  uint64_t seed_;
  std::string source_name_;
};

}  // namespace nupipe::runtime
