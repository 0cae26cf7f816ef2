// nccl_check.h: the NCCL member of the checked-call family (runtime/check.h): a failing NCCL
// call reports the statement, file:line, rank and host, NCCL's error string and its last error
// message, with exit code 5 (a peer or the network failed). CUDA runtime calls use
// runtime/cuda/cuda_check.h's NUPIPE_CUDA_CHECK, the same family.
#pragma once

#include <nccl.h>

#include <string>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace nupipe::parallel {

// "remote process exited or there was a network error (ncclRemoteError: ...)": NCCL's error
// string, the result's name and NCCL's last error message.
inline std::string nccl_error_string(ncclResult_t rc) {
  std::string s = ncclGetErrorString(rc);
  s += " (ncclResult_t " + std::to_string(static_cast<int>(rc));
  const char* last = ncclGetLastError(nullptr);  // comm is unused by NCCL
  if (last != nullptr && *last != '\0') s += "; last NCCL error: " + std::string(last);
  return s + ")";
}

// The failure path of the macros below.
[[noreturn]] inline void fail_nccl(ncclResult_t rc, const char* stmt, const char* file,
                                   int line) {
  ::nupipe::fail(ExitCode::peer, stmt, file, line, "NCCL call failed: " + nccl_error_string(rc),
                 "check the other ranks' logs (the first failure is usually elsewhere); rerun "
                 "with NCCL_DEBUG=WARN for NCCL's own account");
}

// For nonblocking communicators: true when the call is still in progress (ncclInProgress),
// false on ncclSuccess; throws on anything else.
inline bool nccl_in_progress(ncclResult_t rc, const char* stmt, const char* file, int line) {
  if (rc == ncclSuccess) return false;
  if (rc == ncclInProgress) return true;
  fail_nccl(rc, stmt, file, line);
}

}  // namespace nupipe::parallel

// An NCCL call that must return ncclSuccess.
#define NUPIPE_NCCL(call)                                                          \
  do {                                                                             \
    const ncclResult_t nupipe_nccl_rc_ = (call);                                   \
    if (nupipe_nccl_rc_ != ncclSuccess)                                            \
      ::nupipe::parallel::fail_nccl(nupipe_nccl_rc_, #call, __FILE__, __LINE__);   \
  } while (0)

// An NCCL call on a nonblocking communicator: an expression, true while the call is still in
// progress (the caller then polls ncclCommGetAsyncError until it settles); throws on errors.
#define NUPIPE_NCCL_NB(call) \
  ::nupipe::parallel::nccl_in_progress((call), #call, __FILE__, __LINE__)
