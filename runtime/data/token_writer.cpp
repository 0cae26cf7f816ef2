// token_writer.cpp: the streaming token file writer: a placeholder header, buffered appends,
// a tail moved by pread + ftruncate, the header rewritten at commit.
#include "runtime/data/token_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "runtime/check.h"
#include "runtime/data/token_file.h"
#include "runtime/error.h"

namespace nupipe::runtime {

namespace {
constexpr size_t kBufferTokens = size_t{1} << 19;  // 1 MiB
const char* const kIoHint = "check that the directory exists, is writable and has free space";
}  // namespace

TokenFileWriter::TokenFileWriter(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = Fd(::open(tmp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd_.get() < 0) {
    const int err = errno;
    // Nothing was created, so there is nothing to unlink (and tmp may be someone else's).
    throw data_error("cannot write token file " + path_ + ": creating " + tmp_ +
                         " failed: " + errno_text(err),
                     kIoHint);
  }
  const std::vector<int32_t> header(kTokenFileHeaderInts, 0);  // the real one at commit
  if (!write_all(fd_.get(), header.data(), header.size() * sizeof(int32_t))) {
    fail("writing", errno);
  }
  buffer_.reserve(kBufferTokens);
}

TokenFileWriter::~TokenFileWriter() {
  if (!committed_ && fd_.get() >= 0) {
    fd_.close();
    ::unlink(tmp_.c_str());
  }
}

void TokenFileWriter::fail(const std::string& action, int err) {
  fd_.close();
  ::unlink(tmp_.c_str());
  committed_ = true;  // nothing left to clean up
  throw data_error("cannot write token file " + path_ + ": " + action + " " + tmp_ +
                       " failed: " + errno_text(err),
                   kIoHint);
}

void TokenFileWriter::append(const uint16_t* tokens, int64_t n) {
  if (count_ + n >= kTokenFileMaxTokens) {
    throw data_error("token file " + path_ + " would hold " + std::to_string(count_ + n) +
                         " tokens or more; the format holds at most 2^31 - 1 (the count is an "
                         "int32)",
                     "split the text into several files");
  }
  for (int64_t done = 0; done < n;) {
    const int64_t take =
        std::min<int64_t>(n - done, static_cast<int64_t>(kBufferTokens - buffer_.size()));
    buffer_.insert(buffer_.end(), tokens + done, tokens + done + take);
    done += take;
    if (buffer_.size() == kBufferTokens) flush();
  }
  count_ += n;
}

void TokenFileWriter::flush() {
  if (buffer_.empty()) return;
  if (!write_all(fd_.get(), buffer_.data(), buffer_.size() * sizeof(uint16_t))) {
    fail("writing", errno);
  }
  buffer_.clear();
}

void TokenFileWriter::move_tail_to(TokenFileWriter& other, int64_t n) {
  NUPIPE_CHECK(n >= 0 && n <= count_, "move_tail_to: " + std::to_string(n) + " of " +
                                          std::to_string(count_) + " tokens");
  flush();
  const int64_t keep = count_ - n;
  std::vector<uint16_t> block(kBufferTokens);
  for (int64_t at = keep; at < count_;) {
    const int64_t take = std::min<int64_t>(count_ - at, static_cast<int64_t>(block.size()));
    if (!read_all_at(fd_.get(), block.data(), static_cast<size_t>(take) * sizeof(uint16_t),
                     kTokenFileHeaderBytes + at * 2)) {
      fail("reading back", errno);
    }
    other.append(block.data(), take);
    at += take;
  }
  if (::ftruncate(fd_.get(), kTokenFileHeaderBytes + keep * 2) != 0) fail("truncating", errno);
  if (::lseek(fd_.get(), 0, SEEK_END) < 0) fail("seeking in", errno);
  count_ = keep;
}

void TokenFileWriter::commit() {
  flush();
  std::vector<int32_t> header(kTokenFileHeaderInts, 0);
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<int32_t>(count_);
  if (::pwrite(fd_.get(), header.data(), header.size() * sizeof(int32_t), 0) !=
      static_cast<ssize_t>(header.size() * sizeof(int32_t))) {
    fail("writing the header of", errno);
  }
  if (::fsync(fd_.get()) != 0) fail("fsync of", errno);
  if (fd_.close() != 0) fail("closing", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("renaming into place", errno);
  committed_ = true;
  // Make the rename itself durable; a failure here leaves a complete file, so it is not fatal.
  fsync_path(parent_dir(path_), /*directory=*/true);
}

}  // namespace nupipe::runtime
