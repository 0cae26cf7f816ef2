// generate.h: text generation with a whole model on one rank: the next token's logits, then
// greedy choice (temperature 0) or sampling at a temperature among the top k, from a seed.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/stage_model.h"
#include "runtime/splitmix.h"

namespace nupipe::runtime {

struct SampleOptions {
  int tokens = 64;           // new tokens to generate
  double temperature = 1.0;  // 0: greedy (the most likely token; the lowest id on a tie)
  int top_k = 0;             // sample among the k most likely; 0: all
  uint64_t seed = 0;         // the same seed, model and prompt give the same tokens
};

// A deterministic uniform [0, 1) stream from a seed (splitmix64), the same on every platform.
using SampleRng = SplitMix64;

// The token chosen from `logits` [V]: the argmax when temperature == 0, else a draw from
// softmax(logits / temperature) restricted to the top_k largest (ties: the lower id first).
int32_t choose_token(const std::vector<float>& logits, double temperature, int top_k,
                     SampleRng& rng);

// Appends options.tokens tokens to `prompt` (non-empty; ids < vocab) and returns the new ones.
// The model sees at most its seq_len most recent tokens (a longer context slides).
std::vector<int32_t> generate(const StageModel& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& options);

}  // namespace nupipe::runtime
