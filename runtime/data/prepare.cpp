// prepare.cpp: byte-level tokenisation of a file, read in chunks and written as an llm.c
// token file with write_token_file.
#include "runtime/data/prepare.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/data/token_file.h"
#include "runtime/error.h"

namespace nupipe::runtime {

namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

}  // namespace

PrepareStats prepare_bytes(const std::string& text_path, const std::string& out_path) {
  FilePtr in(std::fopen(text_path.c_str(), "rb"));
  if (!in) {
    int err = errno;
    throw data_error("cannot open input text " + text_path + ": " + std::strerror(err),
                     "check the --text path");
  }
  std::vector<uint16_t> tokens;
  std::vector<unsigned char> chunk(kChunkBytes);
  for (;;) {
    const size_t got = std::fread(chunk.data(), 1, chunk.size(), in.get());
    if (static_cast<int64_t>(tokens.size() + got) >= kTokenFileMaxTokens) {
      throw data_error("input text " + text_path +
                           " is too large: 2^31 bytes or more, but a "
                           "token file holds at most 2^31 - 1 tokens",
                       "split the text into several files");
    }
    tokens.insert(tokens.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
    if (got < chunk.size()) {
      if (std::ferror(in.get())) {
        int err = errno;
        throw data_error("cannot read input text " + text_path + " after " +
                             std::to_string(tokens.size()) + " bytes: " + std::strerror(err),
                         "check that --text names a readable regular file");
      }
      break;  // end of file
    }
  }
  if (tokens.empty()) {
    throw data_error("input text " + text_path + " is empty", "give a non-empty file to --text");
  }
  if (tokens.size() < 2) {
    throw data_error("input text " + text_path +
                         " has 1 byte; a token file needs at least 2 "
                         "tokens (an input and its target)",
                     "give a longer file to --text");
  }
  write_token_file(out_path, tokens.data(), static_cast<int64_t>(tokens.size()));
  const auto n = static_cast<int64_t>(tokens.size());
  return PrepareStats{n, n};
}

}  // namespace nupipe::runtime
