// posix_file.cpp: Fd, write_all, fsync and the atomic replace on POSIX calls.
#include "runtime/posix_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nupipe::runtime {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

int Fd::close() {
  const int rc = fd_ >= 0 ? ::close(fd_) : 0;
  fd_ = -1;
  return rc;
}

bool write_all(int fd, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd, p, bytes);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    bytes -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all_at(int fd, void* data, size_t bytes, long long offset) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t r = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = 0;
      return false;
    }
    p += r;
    offset += r;
    bytes -= static_cast<size_t>(r);
  }
  return true;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

int fsync_path(const std::string& path, bool directory) {
  Fd fd(::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  if (::fsync(fd.get()) != 0) return errno;
  return fd.close() == 0 ? 0 : errno;
}

int write_file_atomic(const std::string& path, const std::string& data, std::string* step) {
  const std::string tmp = path + ".tmp";
  auto failed = [&](const char* what) {
    const int err = errno != 0 ? errno : EIO;
    if (step) *step = std::string(what) + " " + tmp;
    ::unlink(tmp.c_str());
    return err;
  };
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    const int err = errno;
    if (step) *step = "creating " + tmp;
    return err;  // nothing was created: nothing to remove (and tmp may be someone else's)
  }
  if (!write_all(fd.get(), data.data(), data.size())) return failed("writing");
  if (::fsync(fd.get()) != 0) return failed("fsync of");
  if (fd.close() != 0) return failed("closing");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failed("renaming into place");
  // The rename itself becomes durable with the directory; the new file is complete either way.
  fsync_path(parent_dir(path), true);
  return 0;
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace nupipe::runtime
