// parse_guard.h: a crash of the HDF5 library while it parses a file nupipe reads (a read of
// memory it does not own, a bus error, a division by zero, on malformed metadata) becomes a
// checkpoint error naming the file, with exit code 4, instead of a core dump.
#pragma once

#include <string>

namespace nupipe::checkpoint {

// While a ParseGuard lives, a fault on the thread that made it prints its message (error and
// HINT, naming `path`) and ends the process with ExitCode::checkpoint at once: nothing is
// written, no destructor runs, a checkpoint the run could fall back to is left as it is. A
// fault on another thread, or after the last guard is gone, goes to the handler installed
// before (Open MPI's, the sanitizers', the default core dump). Guards nest.
//
// It exists for what checksums cannot catch: an HDF5 file whose bytes were changed and whose
// manifest was rewritten to match (the libraries' parsers trust their own structures; HDF5
// 1.10's global heap reader copies what a corrupt size tells it to).
class ParseGuard {
 public:
  explicit ParseGuard(const std::string& path);
  ~ParseGuard();
  ParseGuard(const ParseGuard&) = delete;
  ParseGuard& operator=(const ParseGuard&) = delete;

 private:
  std::string message_;
  const ParseGuard* outer_;
};

}  // namespace nupipe::checkpoint
