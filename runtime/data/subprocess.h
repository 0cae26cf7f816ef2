// subprocess.h: a child process with pipes to its stdin and from its stdout (its stderr is
// kept, for the error message), spawned without a shell, for helpers such as the tokenizer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

namespace nupipe::runtime {

class Subprocess {
 public:
  // Spawns argv (argv[0] searched in PATH). Throws nupipe::Error (usage) when it cannot be
  // started, naming `what` (e.g. "node, which runs the GPT-2 tokenizer") and `hint`. Sets
  // SIGPIPE to ignored in this process, so that a child that died fails a write instead of
  // killing us (only the single-process tools, data prepare and sample, start children).
  Subprocess(const std::vector<std::string>& argv, const std::string& what,
             const std::string& hint);
  ~Subprocess();  // closes the pipes, then waits (a child still running is killed)
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // false when the child has closed its stdin (it died: see finish()).
  bool write(const void* data, size_t bytes);
  // Reads exactly `bytes`; false at end of file or on an error (the child died).
  bool read(void* data, size_t bytes);
  // Closes stdin, waits for the child; returns its exit status (128 + signal when killed).
  int finish();
  // Everything the child wrote to stderr so far (read once it has exited).
  std::string stderr_text();

 private:
  pid_t pid_ = -1;
  int in_ = -1;   // our end of its stdin
  int out_ = -1;  // our end of its stdout
  int err_ = -1;  // our end of its stderr
  int status_ = -1;
};

}  // namespace nupipe::runtime
