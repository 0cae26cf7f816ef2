// cuda_loss_kernels.cu: cross-entropy over fp32 logits, one block per row: max, then the sum
// of exponentials accumulated in double (as the cpu kernel; V reaches 5e4), the row's loss in
// double, and with a gradient buffer dlogits = softmax * dloss - onehot * dloss (in place over
// the logits allowed). The per-row losses are summed by the backend (sum_doubles).
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kLossThreads = 512;

__global__ void cross_entropy_kernel(double* row_loss, float* dlogits, const float* logits,
                                     const int32_t* targets, int64_t V, float dloss) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * V;
  const float* l = logits + row;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
  mx = block_reduce(mx, Max{}, shf);
  double sum = 0.0;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += exp(static_cast<double>(l[v] - mx));
  sum = block_reduce(sum, Sum{}, shd);
  const int64_t t = targets[blockIdx.x];
  if (threadIdx.x == 0) row_loss[blockIdx.x] = mx + log(sum) - l[t];
  if (dlogits == nullptr) return;
  float* d = dlogits + row;
  const float inv = static_cast<float>(1.0 / sum);
  __syncthreads();  // every thread has read l[t] before d (maybe l) is written
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) d[v] = expf(l[v] - mx) * inv * dloss;
  __syncthreads();  // d[t] written (by whichever thread) before the onehot term
  if (threadIdx.x == 0) d[t] -= dloss;
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

void cross_entropy(cudaStream_t s, double* row_loss, float* dlogits, const float* logits,
                   const int32_t* targets, int64_t N, int64_t V, float dloss) {
  NUPIPE_CHECK(N >= 0 && V > 0, "cross_entropy: bad sizes");
  NUPIPE_CHECK(N <= INT32_MAX, "cross_entropy: too many rows");
  if (N == 0) return;
  cross_entropy_kernel<<<static_cast<unsigned>(N), row_threads(V, kLossThreads), 0, s>>>(
      row_loss, dlogits, logits, targets, V, dloss);
  NUPIPE_CUDA_LAUNCH_CHECK(cross_entropy_kernel);
}

}  // namespace nupipe::cuda
