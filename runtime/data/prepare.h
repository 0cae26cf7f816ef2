// prepare.h: `nupipe data prepare`'s work: turning any file into an llm.c-format token file
// with byte-level tokens (each byte is one token, vocab 256).
#pragma once

#include <cstdint>
#include <string>

namespace nupipe::runtime {

inline constexpr int kByteVocab = 256;

struct PrepareStats {
  int64_t bytes_in = 0;  // bytes read from the text
  int64_t tokens = 0;    // tokens written (== bytes_in)
};

// Reads text_path in chunks and writes its bytes as tokens to out_path (atomically, via
// write_token_file). Throws nupipe::Error (ExitCode::data) naming the path when the input is
// missing, unreadable, empty (or a single byte: a token file needs 2 tokens), too large
// (>= 2^31 bytes) or the output cannot be written.
PrepareStats prepare_bytes(const std::string& text_path, const std::string& out_path);

}  // namespace nupipe::runtime
