// token_file.h: llm.c's token file format (a 256 x int32 header, then uint16 tokens), read
// through a validated read-only memory map and written atomically (temp file, fsync, rename).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nupipe::runtime {

// The header: 256 little-endian int32; [0] magic, [1] version, [2] token count N.
inline constexpr int32_t kTokenFileMagic = 20240520;
inline constexpr int32_t kTokenFileVersion = 1;  // uint16 tokens (version 2, uint32, is refused)
inline constexpr int64_t kTokenFileHeaderInts = 256;
inline constexpr int64_t kTokenFileHeaderBytes = kTokenFileHeaderInts * 4;
// write_token_file refuses this many tokens or more (the count is an int32 in the header).
inline constexpr int64_t kTokenFileMaxTokens = int64_t{1} << 31;

// A token file mapped read-only. The constructor validates everything up front (size, magic,
// version, length, every token < vocab_size) and throws nupipe::Error (ExitCode::data) naming
// the path and the offending field or byte offset, so a bad file fails before step 0.
class TokenFile {
 public:
  TokenFile(const std::string& path, int vocab_size);
  ~TokenFile();

  TokenFile(TokenFile&& other) noexcept;
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const uint16_t* data() const { return tokens_; }
  int64_t size() const { return n_tokens_; }
  const std::string& path() const { return path_; }

 private:
  void unmap() noexcept;

  std::string path_;
  void* map_ = nullptr;  // the whole file, PROT_READ
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;  // map_ + header
  int64_t n_tokens_ = 0;
};

// Writes n tokens to `path` in the format above: to `path + ".tmp"` first, fsynced, then
// renamed into place, so a reader never sees a partial file. Refuses n >= 2^31.
// Throws nupipe::Error (ExitCode::data) naming the path and strerror on any I/O failure.
void write_token_file(const std::string& path, const uint16_t* tokens, int64_t n);

}  // namespace nupipe::runtime
