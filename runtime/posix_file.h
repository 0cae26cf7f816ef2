// posix_file.h: the durable-file primitives every writer of nupipe shares: an owned file
// descriptor, write-all, fsync of a file or a directory, and the atomic replace (temp file,
// fsync, rename, fsync of the parent) used by token files, manifests and metrics.
#pragma once

#include <cstddef>
#include <string>

namespace nupipe::runtime {

// Owns a POSIX file descriptor (-1: none).
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and returns close(2)'s result (close can report a deferred write error).
  int close();

 private:
  int fd_;
};

// write(2) until everything is written; false with errno set on failure.
bool write_all(int fd, const void* data, size_t bytes);
// pread(2) until `bytes` are read; false with errno set on failure (errno 0: end of file).
bool read_all_at(int fd, void* data, size_t bytes, long long offset);

// "a/b/c" -> "a/b"; "c" -> "."; "/c" -> "/".
std::string parent_dir(const std::string& path);

// fsync of a file or a directory by path. Returns 0, or the errno of the failing call.
int fsync_path(const std::string& path, bool directory = false);

// Replaces `path` atomically with `data`: written to path + ".tmp", fsynced, renamed over
// `path`, the parent directory fsynced. Returns 0, or the errno of the failing step (whose
// name goes to *step); on failure the temporary file is removed and `path` is untouched.
int write_file_atomic(const std::string& path, const std::string& data, std::string* step);

std::string errno_text(int err);

}  // namespace nupipe::runtime
