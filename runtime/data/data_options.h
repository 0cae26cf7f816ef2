// data_options.h: where training and validation tokens come from ([data] in the config):
// an llm.c-format token file, or the embedded synthetic Markov corpus.
#pragma once

#include <cstdint>
#include <string>

namespace nupipe::runtime {

struct SyntheticOptions {
  int order = 1;                  // context length k of the order-k Markov chain
  int alphabet = 64;              // symbols used: token ids 0 .. alphabet-1
  int branching = 4;              // successors per context (the chain is sparse)
  double smoothing = 0.02;        // probability mass spread uniformly over the alphabet, in
                                  // (0, 1]; keeps the chain irreducible and aperiodic
  int64_t train_tokens = 1 << 21; // length of the generated training stream
  int64_t val_tokens = 1 << 16;   // length of the separate validation stream
  uint64_t seed = 1234;           // the chain and the streams derive from this
};

struct DataOptions {
  std::string train = "synthetic";  // "synthetic" or a token file path
  std::string val;                  // "", "synthetic" or a token file path
  SyntheticOptions synthetic;
};

}  // namespace nupipe::runtime
