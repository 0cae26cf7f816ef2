// token_meta.h: the JSON file next to a token file (FILE.bin -> FILE.bin.json) that says which
// tokenizer made it, from what, so that training and `nupipe sample` use the same one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace nupipe::runtime {

struct TokenFileMeta {
  std::string tokenizer;     // "byte" or "gpt2"
  int vocab_size = 0;        // 256 or 50257
  std::string library;       // "js-tiktoken 1.0.21", "nupipe"
  std::string source;        // the text file it was made from
  int64_t source_bytes = 0;  // that text's size
  int64_t tokens = 0;        // tokens in this file
  std::string split;         // "all", "train" or "val"
  double val_fraction = 0;   // the share of the text's tokens that went to the val file
};

// "train.bin" -> "train.bin.json"
std::string token_meta_path(const std::string& token_file);

// Written atomically; throws nupipe::Error (data) naming the path on failure.
void write_token_meta(const std::string& token_file, const TokenFileMeta& meta);

// std::nullopt when there is none (a token file from elsewhere); throws nupipe::Error (data)
// when it exists but cannot be read or parsed.
std::optional<TokenFileMeta> read_token_meta(const std::string& token_file);

}  // namespace nupipe::runtime
