// prepare.h: `nupipe data prepare`'s work: a text file, read as a stream, tokenized (byte
// level, or GPT-2's BPE) into llm.c-format token files, optionally split into train and val.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/data/tokenizer.h"

namespace nupipe::runtime {

inline constexpr int kByteVocab = 256;

struct PrepareProgress {
  int64_t bytes_done = 0;   // of the text
  int64_t bytes_total = 0;  // the text's size
  int64_t tokens = 0;       // made so far
  double seconds = 0;       // since the start
};

struct PrepareOptions {
  std::string text_path;
  std::string out_path;
  TokenizerKind tokenizer = TokenizerKind::byte;
  // > 0: the last round(val_fraction x tokens) tokens go to val_path, the rest to out_path
  // (train ++ val is the text's encoding). Must be < 1.
  double val_fraction = 0;
  std::string val_path;
  // Text read (and, for gpt2, sent to the tokenizer) per chunk; chunks end where cutting
  // cannot change the tokens (Tokenizer::safe_cut), so the result equals encoding the text
  // whole.
  size_t chunk_bytes = size_t{4} << 20;
  // Tokenizer processes encoding chunks at once (gpt2); 0: the host's cores, at most 8.
  int workers = 0;
  std::function<void(const PrepareProgress&)> progress;  // after every chunk
};

struct PrepareStats {
  int64_t bytes_in = 0;      // bytes read from the text
  int64_t tokens = 0;        // tokens made (train + val)
  int64_t val_tokens = 0;    // of which in the val file
  int64_t chunks = 0;        // pieces the text was encoded in
  int workers = 1;           // tokenizer processes that encoded them
  double seconds = 0;
  std::string library;       // what encoded it
};

// Writes the token files (atomically, each with its TokenFileMeta sidecar, FILE.json).
// Throws nupipe::Error: data (3) naming the path when the input is missing, unreadable,
// empty, not UTF-8 (gpt2; with the byte offset), too short for 2 tokens per file, too large
// (2^31 tokens or more per file) or an output cannot be written; usage (2) when the
// tokenizer cannot run (its fix in the hint) or the options are inconsistent.
PrepareStats prepare_tokens(const PrepareOptions& options);

// Byte level, all into out_path.
PrepareStats prepare_bytes(const std::string& text_path, const std::string& out_path);

}  // namespace nupipe::runtime
