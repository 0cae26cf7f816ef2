// cuda_attention_kernels.cu: causal softmax forward/backward over `rows` [T,T] score matrices,
// one warp per row of a matrix (query i sees keys 0..i; masked entries are written 0). Row
// sums are fp32 in a fixed butterfly order (the cpu kernel uses double: they agree to the
// rounding of a length-T fp32 sum). In place (p = s, ds = dp) is safe: every element is read
// and then written by the same lane, after the row's reductions.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;

__global__ void causal_softmax_forward_kernel(Out p, In s, int64_t nrows, int64_t T,
                                              float scale) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (r >= nrows) return;  // whole warps only
  const int lane = threadIdx.x;
  const int64_t i = r % T, base = r * T;
  // scale * s rounded before the subtraction (no fused multiply-add), as the cpu kernel.
  float mx = -INFINITY;
  for (int64_t j = lane; j <= i; j += 32) mx = fmaxf(mx, __fmul_rn(scale, load(s, base + j)));
  mx = warp_reduce(mx, Max{});
  float sum = 0.0f;
  for (int64_t j = lane; j <= i; j += 32) sum += expf(__fmul_rn(scale, load(s, base + j)) - mx);
  sum = warp_reduce(sum, Sum{});
  const float inv = 1.0f / sum;
  for (int64_t j = lane; j < T; j += 32) {
    // The exponential is recomputed from s, not re-read from p: a bf16 p would round twice.
    const float e = j <= i ? expf(__fmul_rn(scale, load(s, base + j)) - mx) * inv : 0.0f;
    store(p, base + j, e);
  }
}

__global__ void causal_softmax_backward_kernel(Out ds, In p, In dp, int64_t nrows, int64_t T,
                                               float scale) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (r >= nrows) return;
  const int lane = threadIdx.x;
  const int64_t i = r % T, base = r * T;
  float dot = 0.0f;
  for (int64_t j = lane; j <= i; j += 32) dot += load(p, base + j) * load(dp, base + j);
  dot = warp_reduce(dot, Sum{});
  for (int64_t j = lane; j < T; j += 32) {
    const float v = j <= i ? scale * load(p, base + j) * (load(dp, base + j) - dot) : 0.0f;
    store(ds, base + j, v);
  }
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

void causal_softmax_forward(cudaStream_t s, Out p, In sc, int64_t rows, int64_t T,
                            float scale) {
  NUPIPE_CHECK(rows >= 0 && T > 0, "causal_softmax_forward: bad sizes");
  const int64_t nrows = rows * T;
  if (nrows == 0) return;
  const int64_t blocks = (nrows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  NUPIPE_CHECK(blocks <= INT32_MAX, "causal_softmax_forward: too many rows");
  causal_softmax_forward_kernel<<<static_cast<unsigned>(blocks), dim3(32, kWarpsPerBlock), 0,
                                  s>>>(p, sc, nrows, T, scale);
  NUPIPE_CUDA_LAUNCH_CHECK(causal_softmax_forward_kernel);
}

void causal_softmax_backward(cudaStream_t s, Out ds, In p, In dp, int64_t rows, int64_t T,
                             float scale) {
  NUPIPE_CHECK(rows >= 0 && T > 0, "causal_softmax_backward: bad sizes");
  const int64_t nrows = rows * T;
  if (nrows == 0) return;
  const int64_t blocks = (nrows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  NUPIPE_CHECK(blocks <= INT32_MAX, "causal_softmax_backward: too many rows");
  causal_softmax_backward_kernel<<<static_cast<unsigned>(blocks), dim3(32, kWarpsPerBlock), 0,
                                   s>>>(ds, p, dp, nrows, T, scale);
  NUPIPE_CUDA_LAUNCH_CHECK(causal_softmax_backward_kernel);
}

}  // namespace nupipe::cuda
