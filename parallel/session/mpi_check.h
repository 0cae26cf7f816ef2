// mpi_check.h: the MPI member of the checked-call family: a failing MPI call reports the
// statement, file:line, rank and host, and MPI's own error string (exit code 5: peer failure).
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/check.h"

namespace nupipe::parallel {
std::string mpi_error_string(int code);
}  // namespace nupipe::parallel

#define NUPIPE_MPI(call)                                                                  \
  do {                                                                                    \
    const int nupipe_mpi_rc_ = (call);                                                    \
    if (nupipe_mpi_rc_ != MPI_SUCCESS) {                                                  \
      NUPIPE_FAIL(::nupipe::ExitCode::peer, #call,                                        \
                  "MPI call failed: " + ::nupipe::parallel::mpi_error_string(nupipe_mpi_rc_), \
                  "check the other ranks' logs: the first failure is usually elsewhere"); \
    }                                                                                     \
  } while (0)
