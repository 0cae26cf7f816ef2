// cuda_check.h: the checked-call macros for the CUDA runtime, cuBLAS and cuBLASLt. A failed
// call throws nupipe::Error (ExitCode::internal) naming the statement, file:line, rank and host
// and the library's error string, with a hint (runtime/check.h's family, one per library).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "runtime/check.h"

namespace nupipe::cuda {

// The failure paths (out of line: they build the message and throw).
[[noreturn]] void fail_cuda(cudaError_t err, const char* stmt, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t st, const char* stmt, const char* file, int line);

}  // namespace nupipe::cuda

// A CUDA runtime call: cudaSuccess or throw.
#define NUPIPE_CUDA_CHECK(call)                                                  \
  do {                                                                           \
    const cudaError_t nupipe_err_ = (call);                                      \
    if (nupipe_err_ != cudaSuccess)                                              \
      ::nupipe::cuda::fail_cuda(nupipe_err_, #call, __FILE__, __LINE__);         \
  } while (0)

// A cuBLAS or cuBLASLt call (both return cublasStatus_t).
#define NUPIPE_CUBLAS_CHECK(call)                                                \
  do {                                                                           \
    const cublasStatus_t nupipe_st_ = (call);                                    \
    if (nupipe_st_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::nupipe::cuda::fail_cublas(nupipe_st_, #call, __FILE__, __LINE__);        \
  } while (0)

// After a kernel launch, naming the kernel: the launch's own error (bad configuration, no
// kernel image for this device). Errors of the kernel's execution surface at the next
// synchronising call (copy_to_host, a loss), which is checked the same way.
#define NUPIPE_CUDA_LAUNCH_CHECK(kernel)                                         \
  do {                                                                           \
    const cudaError_t nupipe_err_ = cudaGetLastError();                          \
    if (nupipe_err_ != cudaSuccess)                                              \
      ::nupipe::cuda::fail_cuda(nupipe_err_, "launch of " #kernel, __FILE__, __LINE__); \
  } while (0)
