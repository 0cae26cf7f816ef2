// error.h: the error type every layer throws, carrying the process exit code it maps to.
// Messages name the problem; the hint says what to do about it. Both are printable(): a
// path or value that is not UTF-8 shows its bytes as \xNN, never raw.
#pragma once

#include <stdexcept>
#include <string>

#include "runtime/printable.h"

namespace nupipe {

// Exit codes are a contract (docs/sre-runbook.md): every rank exits with the same one.
enum class ExitCode : int {
  ok = 0,
  internal = 1,     // a bug in nupipe: please report it
  usage = 2,        // bad command line or config
  data = 3,         // bad data file
  checkpoint = 4,   // checkpoint missing, corrupt or incompatible
  peer = 5,         // another rank failed or timed out
  non_finite = 6,   // the loss became NaN or Inf
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& what, const std::string& hint = {})
      : std::runtime_error(printable(what)), code_(code), hint_(printable(hint)) {}
  ExitCode code() const { return code_; }
  const std::string& hint() const { return hint_; }

 private:
  ExitCode code_;
  std::string hint_;
};

inline Error usage_error(const std::string& what, std::string hint = {}) {
  return Error(ExitCode::usage, what, std::move(hint));
}
inline Error data_error(const std::string& what, std::string hint = {}) {
  return Error(ExitCode::data, what, std::move(hint));
}
inline Error checkpoint_error(const std::string& what, std::string hint = {}) {
  return Error(ExitCode::checkpoint, what, std::move(hint));
}
inline Error peer_error(const std::string& what, std::string hint = {}) {
  return Error(ExitCode::peer, what, std::move(hint));
}

}  // namespace nupipe
