// cuda_llama_kernels.cu: the llama family's kernels: RMSNorm (fp32 row statistics, one block
// per row, a fixed tree order; the weight gradient a per-column sum over rows in double, in row
// order), the rotary embedding in place from precomputed cos/sin tables, SwiGLU and its
// backward. The cpu kernels (runtime/cpu/cpu_kernels.cpp) are the reference.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kRowThreads = 512;

__global__ void rmsnorm_forward_kernel(Out out, float* rstd, In x, In w, int64_t C, float eps) {
  __shared__ float sh[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * C;
  float sq = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = load(x, row + c);
    sq += v * v;
  }
  const float ms = block_reduce(sq, Sum{}, sh) / static_cast<float>(C);
  const float s = static_cast<float>(1.0 / sqrt(static_cast<double>(ms) + eps));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    store(out, row + c, load(x, row + c) * s * load(w, c));
  }
  if (threadIdx.x == 0) rstd[blockIdx.x] = s;
}

// dx = s (w g - x s^2 mean(w g x)), one block per row.
__global__ void rmsnorm_dx_kernel(Out dx, In dout, In x, In w, const float* rstd, int64_t C) {
  __shared__ float sh[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * C;
  const float s = rstd[blockIdx.x];
  float acc = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    acc += load(dout, row + c) * load(w, c) * load(x, row + c);
  }
  const float k = block_reduce(acc, Sum{}, sh) / static_cast<float>(C) * s * s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    store(dx, row + c, s * (load(dout, row + c) * load(w, c) - load(x, row + c) * k));
  }
}

// dw[c] += sum over rows of dout * x * rstd, in double, rows in order: one thread per column
// (neighbouring threads read neighbouring columns of a row).
__global__ void rmsnorm_dw_kernel(float* dw, In dout, In x, const float* rstd, int64_t N,
                                  int64_t C) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    for (int64_t r = 0; r < N; ++r) {
      acc += static_cast<double>(load(dout, r * C + c)) * (load(x, r * C + c) * rstd[r]);
    }
    dw[c] += static_cast<float>(acc);
  }
}

// One thread per (row, head, pair d < D/2): rotate (x_d, x_{d + D/2}) by the row position's
// angle; inverse rotates back.
__global__ void rope_kernel(Out x, const float* cs, const float* sn, int64_t N, int64_t T,
                            int64_t ld, int64_t heads, int64_t D, bool inverse) {
  const int64_t half = D / 2, n = N * heads * half;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = k % half, h = (k / half) % heads, i = k / (half * heads);
    const int64_t at = i * ld + h * D + d, t = (i % T) * half + d;
    const float c = cs[t], s = inverse ? -sn[t] : sn[t];
    const float a = load(x, at), b = load(x, at + half);
    store(x, at, a * c - b * s);
    store(x, at + half, b * c + a * s);
  }
}

__global__ void swiglu_forward_kernel(Out out, In in, int64_t N, int64_t F) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < N * F;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / F, f = k % F;
    const float g = load(in, i * 2 * F + f), u = load(in, i * 2 * F + F + f);
    store(out, k, g / (1.0f + expf(-g)) * u);
  }
}

__global__ void swiglu_backward_kernel(Out din, In in, In dout, int64_t N, int64_t F) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < N * F;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / F, f = k % F;
    const float g = load(in, i * 2 * F + f), u = load(in, i * 2 * F + F + f);
    const float go = load(dout, k), sig = 1.0f / (1.0f + expf(-g));
    store(din, i * 2 * F + f, go * u * sig * (1.0f + g * (1.0f - sig)));
    store(din, i * 2 * F + F + f, go * g * sig);
  }
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

void rmsnorm_forward(cudaStream_t s, Out out, float* rstd, In x, In w, int64_t N, int64_t C,
                     float eps) {
  NUPIPE_CHECK(N >= 0 && C > 0 && N <= INT32_MAX, "rmsnorm_forward: bad sizes");
  if (N == 0) return;
  rmsnorm_forward_kernel<<<static_cast<unsigned>(N), row_threads(C, kRowThreads), 0, s>>>(
      out, rstd, x, w, C, eps);
  NUPIPE_CUDA_LAUNCH_CHECK(rmsnorm_forward_kernel);
}

void rmsnorm_backward_input(cudaStream_t s, Out dx, In dout, In x, In w, const float* rstd,
                            int64_t N, int64_t C) {
  NUPIPE_CHECK(N >= 0 && C > 0 && N <= INT32_MAX, "rmsnorm_backward_input: bad sizes");
  if (N == 0) return;
  rmsnorm_dx_kernel<<<static_cast<unsigned>(N), row_threads(C, kRowThreads), 0, s>>>(
      dx, dout, x, w, rstd, C);
  NUPIPE_CUDA_LAUNCH_CHECK(rmsnorm_dx_kernel);
}

void rmsnorm_backward_weight(cudaStream_t s, float* dw, In dout, In x, const float* rstd,
                             int64_t N, int64_t C) {
  NUPIPE_CHECK(N >= 0 && C > 0, "rmsnorm_backward_weight: bad sizes");
  if (N == 0) return;
  rmsnorm_dw_kernel<<<grid_for(C), kThreads, 0, s>>>(dw, dout, x, rstd, N, C);
  NUPIPE_CUDA_LAUNCH_CHECK(rmsnorm_dw_kernel);
}

void rope(cudaStream_t s, Out x, const float* cos, const float* sin, int64_t N, int64_t T,
          int64_t ld, int64_t heads, int64_t D, bool inverse) {
  NUPIPE_CHECK(N >= 0 && T > 0 && heads >= 0 && D % 2 == 0 && heads * D <= ld,
               "rope: bad sizes");
  const int64_t n = N * heads * (D / 2);
  if (n == 0) return;
  rope_kernel<<<grid_for(n), kThreads, 0, s>>>(x, cos, sin, N, T, ld, heads, D, inverse);
  NUPIPE_CUDA_LAUNCH_CHECK(rope_kernel);
}

void swiglu_forward(cudaStream_t s, Out out, In in, int64_t N, int64_t F) {
  NUPIPE_CHECK(N >= 0 && F >= 0, "swiglu_forward: bad sizes");
  if (N * F == 0) return;
  swiglu_forward_kernel<<<grid_for(N * F), kThreads, 0, s>>>(out, in, N, F);
  NUPIPE_CUDA_LAUNCH_CHECK(swiglu_forward_kernel);
}

void swiglu_backward(cudaStream_t s, Out din, In in, In dout, int64_t N, int64_t F) {
  NUPIPE_CHECK(N >= 0 && F >= 0, "swiglu_backward: bad sizes");
  if (N * F == 0) return;
  swiglu_backward_kernel<<<grid_for(N * F), kThreads, 0, s>>>(din, in, dout, N, F);
  NUPIPE_CUDA_LAUNCH_CHECK(swiglu_backward_kernel);
}

}  // namespace nupipe::cuda
