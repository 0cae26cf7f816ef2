// cuda_check.cpp: the failure paths of the CUDA / cuBLAS checked-call macros.
#include "runtime/cuda/cuda_check.h"

#include <string>

namespace nupipe::cuda {

namespace {
std::string hint_for(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation:
      return "the device is out of memory: lower train.micro_batch or seq_len, enable "
             "train.recompute, or set runtime.memory_gib so the planner fits the stage";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no usable CUDA device/driver on this host: check nvidia-smi and "
             "CUDA_VISIBLE_DEVICES, or use runtime.device = \"cpu\"";
    case cudaErrorNoKernelImageForDevice:
      return "this build has no kernels for the device's architecture: rebuild with "
             "-DCMAKE_CUDA_ARCHITECTURES=<the device's sm>";
    default:
      return "a bug in nupipe's CUDA backend or a device fault: rerun with "
             "CUDA_LAUNCH_BLOCKING=1 (and compute-sanitizer) to locate the failing kernel, "
             "and report it";
  }
}
}  // namespace

void fail_cuda(cudaError_t err, const char* stmt, const char* file, int line) {
  ::nupipe::fail(ExitCode::internal, stmt, file, line,
                 std::string("CUDA error ") + cudaGetErrorName(err) + ": " +
                     cudaGetErrorString(err),
                 hint_for(err));
}

void fail_cublas(cublasStatus_t st, const char* stmt, const char* file, int line) {
  const bool oom = st == CUBLAS_STATUS_ALLOC_FAILED;
  ::nupipe::fail(ExitCode::internal, stmt, file, line,
                 std::string("cuBLAS error ") + cublasGetStatusName(st) + ": " +
                     cublasGetStatusString(st),
                 oom ? hint_for(cudaErrorMemoryAllocation)
                     : "an unsupported GEMM shape/type/alignment or a bug in nupipe's CUDA "
                       "backend: rerun with CUBLASLT_LOG_LEVEL=5 and report it");
}

}  // namespace nupipe::cuda
