// cli_process.h: what the end-to-end CLI tests share: running a program (the real `nupipe`
// binary, or mpirun) with stdout+stderr captured under a timeout, and fresh temp directories.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace nupipe::cli_test {

namespace fs = std::filesystem;

inline std::string nupipe_bin() { return NUPIPE_BIN; }
inline std::string source_dir() { return NUPIPE_SOURCE_DIR; }
inline std::string tiny_config() { return source_dir() + "/configs/tiny.toml"; }

// What a finished (or killed) process left behind.
struct ProcessResult {
  int exit_code = -1;      // WEXITSTATUS, or 128 + signal when it was killed
  bool timed_out = false;  // it ran past the timeout and was killed
  double seconds = 0.0;    // wall time
  std::string output;      // stdout and stderr, interleaved as written
  std::string command;     // for failure messages
};

inline std::ostream& operator<<(std::ostream& os, const ProcessResult& r) {
  return os << "command: " << r.command << "\nexit code: " << r.exit_code
            << (r.timed_out ? " (timed out)" : "") << " after " << r.seconds
            << " s\noutput:\n" << r.output;
}

// Runs argv[0] (searched in PATH when it has no slash) in `cwd` with stdin from /dev/null,
// stdout and stderr into one pipe, `extra_env` added to (or replacing in) the environment.
// The child leads its own process group; after `timeout_s` the group gets SIGTERM, then
// SIGKILL 3 s later, so a hang fails the test instead of blocking it.
inline ProcessResult run_process(const std::vector<std::string>& argv, const std::string& cwd,
                                 double timeout_s = 60.0,
                                 const std::map<std::string, std::string>& extra_env = {}) {
  ProcessResult r;
  for (const auto& a : argv) r.command += (r.command.empty() ? "" : " ") + a;

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (!extra_env.count(kv.substr(0, kv.find('=')))) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);

  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error("posix_spawnp " + argv[0] + " failed: " + std::strerror(rc));
  }

  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  bool term_sent = false, kill_sent = false;
  double term_at = 0.0;
  char buf[65536];
  for (;;) {  // read until EOF (every holder of the pipe has exited) or the deadline
    const double now = elapsed();
    if (now > timeout_s && !term_sent) {
      r.timed_out = term_sent = true;
      term_at = now;
      ::kill(-pid, SIGTERM);
    }
    if (term_sent && !kill_sent && now > term_at + 3.0) {
      kill_sent = true;
      ::kill(-pid, SIGKILL);
    }
    if (kill_sent && now > term_at + 6.0) break;  // a grandchild outside the group holds the pipe
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, 200);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    r.output.append(buf, static_cast<size_t>(got));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.seconds = elapsed();
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
  return r;
}

// `nupipe ARGS...`, run in `cwd`.
inline ProcessResult run_nupipe(const std::vector<std::string>& args, const std::string& cwd,
                                double timeout_s = 60.0) {
  std::vector<std::string> argv{nupipe_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, cwd, timeout_s);
}

// `nupipe train CONFIG --set S1 --set S2 ...`.
inline ProcessResult run_train(const std::string& config, const std::vector<std::string>& sets,
                               const std::string& cwd, double timeout_s = 90.0) {
  // configs/tiny.toml is the 4-rank default; these tests run one process, so they ask for a
  // single stage first (a test's own sets come after and win).
  std::vector<std::string> args{"train", config};
  for (const char* s : {"parallel.pipeline=1", "parallel.data=1", "parallel.stage_layers=uniform"}) {
    args.push_back("--set");
    args.push_back(s);
  }
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  return run_nupipe(args, cwd, timeout_s);
}

// The full path of `name` in PATH, or "" when it is not there.
inline std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string cand = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return "";
}

// A fresh directory under gtest's temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "/nupipe_cli_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    const char* made = ::mkdtemp(buf.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = fs::canonical(made).string();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) throw std::runtime_error("cannot write " + path);
}

// Lines of a text file, without the newlines; a trailing empty line is dropped.
inline std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The entries of a directory (recursively) as one string, for failure messages.
inline std::string list_dir(const std::string& dir) {
  std::string s;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    s += "  " + it->path().string() + "\n";
  }
  return s.empty() ? "  (empty)\n" : s;
}

// How many times `needle` occurs in `hay`.
inline int count_occurrences(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos;
       pos = hay.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

}  // namespace nupipe::cli_test
