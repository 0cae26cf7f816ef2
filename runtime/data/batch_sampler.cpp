// batch_sampler.cpp: counter-based (stateless) training windows and wrapping sequential
// validation windows over a borrowed token stream.
#include "runtime/data/batch_sampler.h"

#include <string>
#include <utility>

#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/splitmix.h"

namespace nupipe::runtime {

BatchSampler::BatchSampler(const uint16_t* tokens, int64_t n_tokens, int seq_len, uint64_t seed,
                           std::string source_name)
    : tokens_(tokens),
      n_tokens_(n_tokens),
      seq_len_(seq_len),
      seed_(seed),
      source_name_(std::move(source_name)) {
  NUPIPE_CHECK(seq_len >= 1, "seq_len must be >= 1, got " + std::to_string(seq_len));
  NUPIPE_CHECK(n_tokens >= 0, "negative token count " + std::to_string(n_tokens));
  if (n_tokens < int64_t{seq_len} + 1) {
    throw data_error(source_name_ + " has " + std::to_string(n_tokens) +
                         " tokens, fewer than one window needs (seq_len + 1 = " +
                         std::to_string(int64_t{seq_len} + 1) + ")",
                     "use a longer token file or set model.seq_len <= " +
                         std::to_string(n_tokens > 0 ? n_tokens - 1 : 0));
  }
  NUPIPE_CHECK(tokens != nullptr, "null token stream for " + source_name_);
}

int64_t BatchSampler::window_offset(int64_t step, int64_t sample) const {
  NUPIPE_CHECK(step >= 0 && sample >= 0, "window_offset(step " + std::to_string(step) +
                                             ", sample " + std::to_string(sample) + ")");
  const uint64_t h =
      mix64(mix64(mix64(seed_) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(sample));
  // Map to [0, n_tokens - seq_len) by a 64x64 -> 128-bit multiply (bias < range / 2^64).
  const auto range = static_cast<uint64_t>(n_tokens_ - seq_len_);
  return static_cast<int64_t>((static_cast<unsigned __int128>(h) * range) >> 64);
}

void BatchSampler::copy_window(int64_t offset, int32_t* tokens, int32_t* targets) const {
  const uint16_t* src = tokens_ + offset;
  for (int t = 0; t < seq_len_; ++t) {
    tokens[t] = src[t];
    targets[t] = src[t + 1];
  }
}

void BatchSampler::fill(int64_t step, int64_t first_sample, int count, int32_t* tokens,
                        int32_t* targets) const {
  NUPIPE_CHECK(count >= 0, "fill: negative count " + std::to_string(count));
  for (int i = 0; i < count; ++i) {
    const int64_t off = window_offset(step, first_sample + i);
    copy_window(off, tokens + int64_t{i} * seq_len_, targets + int64_t{i} * seq_len_);
  }
}

void BatchSampler::fill_sequential(int64_t window, int count, int32_t* tokens,
                                   int32_t* targets) const {
  NUPIPE_CHECK(window >= 0 && count >= 0, "fill_sequential(window " + std::to_string(window) +
                                              ", count " + std::to_string(count) + ")");
  const int64_t n_windows = num_sequential_windows();
  for (int i = 0; i < count; ++i) {
    const int64_t w = (window + i) % n_windows;
    copy_window(w * seq_len_, tokens + int64_t{i} * seq_len_, targets + int64_t{i} * seq_len_);
  }
}

}  // namespace nupipe::runtime
