// cuda_reduce_kernels.cu: whole-array reductions (sum of squares in double, non-finite count,
// a sum of doubles), each in a fixed order so results are deterministic run to run; the
// results stay on the device for the backend's one copy to the host.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kReduceBlocks = 1024;  // partials of the first pass (fixed: a fixed order)

// Per-block partial sums of x^2 in double: the cpu backend's contract is a double sum, and a
// gradient norm over 1e9 elements in fp32 would lose digits.
__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double sh[32];
  double acc = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_reduce(acc, Sum{}, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: out[0] = sum of x[0..n).
__global__ void sum_doubles_kernel(double* out, const double* x, int64_t n) {
  __shared__ double sh[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
  acc = block_reduce(acc, Sum{}, sh);
  if (threadIdx.x == 0) out[0] = acc;
}

// Integer counts: atomicAdd on ints is exact and order-independent.
__global__ void count_nonfinite_kernel(int* bad, const float* x, int64_t n) {
  __shared__ int sh[32];
  int count = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    count += isfinite(x[i]) ? 0 : 1;
  }
  count = block_reduce(count, Sum{}, sh);
  if (threadIdx.x == 0 && count > 0) atomicAdd(bad, count);
}

unsigned reduce_blocks(int64_t n) {
  const unsigned g = grid_for(n);
  return g < kReduceBlocks ? g : kReduceBlocks;
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

size_t sum_squares_scratch(int64_t n) { return sizeof(double) * reduce_blocks(n); }

void sum_squares(cudaStream_t s, double* out, const float* x, int64_t n, void* scratch) {
  NUPIPE_CHECK(n >= 0, "sum_squares: negative size");
  const unsigned blocks = reduce_blocks(n);
  double* partial = static_cast<double*>(scratch);
  sum_squares_kernel<<<blocks, kThreads, 0, s>>>(partial, x, n);
  NUPIPE_CUDA_LAUNCH_CHECK(sum_squares_kernel);
  sum_doubles(s, out, partial, blocks);
}

void sum_doubles(cudaStream_t s, double* out, const double* x, int64_t n) {
  NUPIPE_CHECK(n >= 0, "sum_doubles: negative size");
  sum_doubles_kernel<<<1, 1024, 0, s>>>(out, x, n);
  NUPIPE_CUDA_LAUNCH_CHECK(sum_doubles_kernel);
}

void count_nonfinite(cudaStream_t s, int* bad, const float* x, int64_t n) {
  NUPIPE_CHECK(n >= 0, "count_nonfinite: negative size");
  NUPIPE_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), s));
  if (n == 0) return;
  count_nonfinite_kernel<<<reduce_blocks(n), kThreads, 0, s>>>(bad, x, n);
  NUPIPE_CUDA_LAUNCH_CHECK(count_nonfinite_kernel);
}

}  // namespace nupipe::cuda
