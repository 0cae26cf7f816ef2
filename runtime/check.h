// check.h: the checked-call macro family. A failed check reports the statement, file:line,
// rank and host; library-specific variants (MPI, HDF5, CUDA...) build on NUPIPE_FAIL.
#pragma once

#include <string>

#include "runtime/error.h"

namespace nupipe {

// "rank R on HOST", read from the launcher's environment (Open MPI, PMI, Slurm) so that
// checks below the parallel layer can still say where they fired.
std::string where_am_i();

[[noreturn]] void fail(ExitCode code, const char* statement, const char* file, int line,
                       const std::string& detail, const std::string& hint = {});

}  // namespace nupipe

#define NUPIPE_FAIL(code, stmt, detail, hint) \
  ::nupipe::fail((code), (stmt), __FILE__, __LINE__, (detail), (hint))

// An invariant of nupipe itself; failing it is a bug (exit code 1).
#define NUPIPE_CHECK(cond, detail)                                                 \
  do {                                                                             \
    if (!(cond)) NUPIPE_FAIL(::nupipe::ExitCode::internal, #cond, (detail), "");   \
  } while (0)
