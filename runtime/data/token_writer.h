// token_writer.h: a token file written as a stream (tokens appended as they come, the header's
// count filled in at the end), committed atomically like write_token_file: temp file, fsync,
// rename. The tail of one stream can be moved into another (a validation split).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/posix_file.h"

namespace nupipe::runtime {

class TokenFileWriter {
 public:
  // Creates path + ".tmp". Throws nupipe::Error (data) naming the path on any I/O failure.
  explicit TokenFileWriter(std::string path);
  ~TokenFileWriter();  // without commit(): the temporary file is removed
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Throws when the file would reach 2^31 tokens (the header's count is an int32).
  void append(const uint16_t* tokens, int64_t n);
  int64_t size() const { return count_; }
  const std::string& path() const { return path_; }

  // Moves this stream's last n tokens to the end of `other` and drops them from this one.
  void move_tail_to(TokenFileWriter& other, int64_t n);

  // Writes the header, fsyncs, renames into place (then fsyncs the directory).
  void commit();

 private:
  void flush();
  [[noreturn]] void fail(const std::string& action, int err);

  std::string path_, tmp_;
  Fd fd_;
  int64_t count_ = 0;             // tokens appended (flushed or buffered)
  std::vector<uint16_t> buffer_;  // not yet written
  bool committed_ = false;
};

}  // namespace nupipe::runtime
