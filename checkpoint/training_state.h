// training_state.h: everything besides the weights and the optimizer's tensors that makes
// step N+1 follow step N exactly. The trainer owns one; a checkpoint saves and restores it.
#pragma once

#include <cstdint>
#include <string>

namespace nupipe::checkpoint {

struct TrainingState {
  int64_t step = 0;             // steps completed: the index of the next step to run
  int64_t optimizer_steps = 0;  // AdamW's update count t (its bias corrections)
  uint64_t seed = 0;            // train.seed: initialisation and the batch sampler's stream
  // The batch sampler is stateless: step s draws its sequences from (seed, s) and the data,
  // so the data position is `step` itself. What it is a position in:
  std::string data_name;        // the training stream (a path, or the synthetic corpus)
  int64_t data_tokens = 0;      // its length in tokens
  // Training tokens consumed by the steps completed, over every (re)start: metrics.jsonl's
  // `tokens` (batch shapes may change between restarts, so it is counted, not derived).
  // -1 when read from a checkpoint that predates it (reader.cpp).
  int64_t tokens_seen = 0;
  // The learning-rate schedule's position is `step` too; its shape (lr, warm-up, decay
  // length = train.steps) comes from the config saved beside it.
};

}  // namespace nupipe::checkpoint
