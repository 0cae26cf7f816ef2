// subprocess.cpp: posix_spawnp with three pipes; reads and writes that retry on EINTR and
// ignore SIGPIPE (a dead child is reported by finish(), not by a signal).
#include "runtime/data/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/error.h"
#include "runtime/posix_file.h"

extern char** environ;

namespace nupipe::runtime {

namespace {

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

Subprocess::Subprocess(const std::vector<std::string>& argv, const std::string& what,
                       const std::string& hint) {
  // Writing to a child that died must fail with EPIPE, not kill this process.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, nullptr);

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw usage_error("cannot start " + what + ": pipe failed");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]);
    throw usage_error("cannot start " + what + ": pipe failed");
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]), ::close(out[0]), ::close(out[1]);
    throw usage_error("cannot start " + what + ": pipe failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (std::string& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  const int rc = ::posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]), ::close(out[1]), ::close(err[1]);
  in_ = in[1], out_ = out[0], err_ = err[0];
  if (rc != 0) {
    pid_ = -1;
    close_fd(in_), close_fd(out_), close_fd(err_);
    throw usage_error("cannot start " + what + ": " + argv[0] + ": " + errno_text(rc), hint);
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    close_fd(in_);
    close_fd(out_);
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == 0) {  // still running: it is not needed any more
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  close_fd(in_), close_fd(out_), close_fd(err_);
}

bool Subprocess::write(const void* data, size_t bytes) {
  return in_ >= 0 && write_all(in_, data, bytes);
}

bool Subprocess::read(void* data, size_t bytes) {
  auto* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::read(out_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return true;
}

int Subprocess::finish() {
  if (pid_ <= 0) return status_;
  close_fd(in_);
  close_fd(out_);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0) {
    if (errno != EINTR) return status_ = 128;
  }
  pid_ = -1;
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

std::string Subprocess::stderr_text() {
  std::string text;
  if (err_ < 0) return text;
  // Non-blocking: a child that is still running must not make us wait here.
  ::fcntl(err_, F_SETFL, ::fcntl(err_, F_GETFL) | O_NONBLOCK);
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(err_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace nupipe::runtime
