// cuda_elementwise.cu: the elementwise kernels (convert, add, accumulate, scale, bias, GELU,
// AdamW), fp32 arithmetic on widened operands with each bf16 output rounded once; launchers
// after the kernels.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi), as the cpu kernel

#define NUPIPE_GRID_STRIDE(i, n)                                                     \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void convert_kernel(Out dst, In src, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) store(dst, i, load(src, i));
}

__global__ void add_kernel(Out out, In a, In b, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) store(out, i, load(a, i) + load(b, i));
}

__global__ void accumulate_kernel(Out y, In x, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) store(y, i, load(y, i) + load(x, i));
}

__global__ void scale_kernel(float* x, float v, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) x[i] *= v;
}

__global__ void scale_matrix_kernel(Out c, int64_t M, int64_t N, int64_t ldc, int64_t stride,
                                    int64_t batch, float beta) {
  NUPIPE_GRID_STRIDE(k, batch * M * N) {
    const int64_t b = k / (M * N), r = k % (M * N);
    const int64_t idx = b * stride + (r / N) * ldc + r % N;
    store(c, idx, beta == 0.0f ? 0.0f : beta * load(c, idx));
  }
}

__global__ void add_bias_kernel(Out out, In b, int64_t N, int64_t C) {
  NUPIPE_GRID_STRIDE(i, N * C) store(out, i, load(out, i) + load(b, i % C));
}

__global__ void gelu_forward_kernel(Out out, In x, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) {
    const float v = load(x, i);
    store(out, i, 0.5f * v * (1.0f + tanhf(kGeluC * (v + 0.044715f * v * v * v))));
  }
}

__global__ void gelu_backward_kernel(Out dx, In x, In dout, int64_t n) {
  NUPIPE_GRID_STRIDE(i, n) {
    const float v = load(x, i);
    const float u = kGeluC * (v + 0.044715f * v * v * v);
    const float t = tanhf(u);
    const float du = kGeluC * (1.0f + 3.0f * 0.044715f * v * v);
    store(dx, i, load(dout, i) * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du));
  }
}

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                             float beta1, float beta2, float eps, float step, float inv_sqrt_c2,
                             float decay) {
  NUPIPE_GRID_STRIDE(i, n) {
    // The cpu kernel's explicit fmas, so that the two round alike (IEEE sqrt and division).
    const float g = grad[i];
    const float mi = fmaf(beta1, m[i], (1.0f - beta1) * g);
    const float vi = fmaf(beta2, v[i], ((1.0f - beta2) * g) * g);
    const float update = (step * mi) / fmaf(sqrtf(vi), inv_sqrt_c2, eps);
    m[i] = mi;
    v[i] = vi;
    param[i] = fmaf(param[i], decay, -update);
  }
}

#undef NUPIPE_GRID_STRIDE

}  // namespace

// ------------------------------------------------------------------------------ launchers

void convert(cudaStream_t s, Out dst, In src, int64_t n) {
  NUPIPE_CHECK(n >= 0, "convert: negative size");
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kThreads, 0, s>>>(dst, src, n);
  NUPIPE_CUDA_LAUNCH_CHECK(convert_kernel);
}

void add(cudaStream_t s, Out out, In a, In b, int64_t n) {
  NUPIPE_CHECK(n >= 0, "add: negative size");
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, s>>>(out, a, b, n);
  NUPIPE_CUDA_LAUNCH_CHECK(add_kernel);
}

void accumulate(cudaStream_t s, Out y, In x, int64_t n) {
  NUPIPE_CHECK(n >= 0, "accumulate: negative size");
  if (n == 0) return;
  accumulate_kernel<<<grid_for(n), kThreads, 0, s>>>(y, x, n);
  NUPIPE_CUDA_LAUNCH_CHECK(accumulate_kernel);
}

void scale(cudaStream_t s, float* x, float v, int64_t n) {
  NUPIPE_CHECK(n >= 0, "scale: negative size");
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, s>>>(x, v, n);
  NUPIPE_CUDA_LAUNCH_CHECK(scale_kernel);
}

void scale_matrix(cudaStream_t s, Out c, int64_t M, int64_t N, int64_t ldc, int64_t stride,
                  int64_t batch, float beta) {
  NUPIPE_CHECK(M >= 0 && N >= 0 && batch >= 0 && ldc >= N, "scale_matrix: bad sizes");
  if (M * N * batch == 0) return;
  scale_matrix_kernel<<<grid_for(M * N * batch), kThreads, 0, s>>>(c, M, N, ldc, stride, batch,
                                                                   beta);
  NUPIPE_CUDA_LAUNCH_CHECK(scale_matrix_kernel);
}

void add_bias(cudaStream_t s, Out out, In b, int64_t N, int64_t C) {
  NUPIPE_CHECK(N >= 0 && C >= 0, "add_bias: negative size");
  if (N * C == 0) return;
  add_bias_kernel<<<grid_for(N * C), kThreads, 0, s>>>(out, b, N, C);
  NUPIPE_CUDA_LAUNCH_CHECK(add_bias_kernel);
}

void gelu_forward(cudaStream_t s, Out out, In x, int64_t n) {
  NUPIPE_CHECK(n >= 0, "gelu_forward: negative size");
  if (n == 0) return;
  gelu_forward_kernel<<<grid_for(n), kThreads, 0, s>>>(out, x, n);
  NUPIPE_CUDA_LAUNCH_CHECK(gelu_forward_kernel);
}

void gelu_backward(cudaStream_t s, Out dx, In x, In dout, int64_t n) {
  NUPIPE_CHECK(n >= 0, "gelu_backward: negative size");
  if (n == 0) return;
  gelu_backward_kernel<<<grid_for(n), kThreads, 0, s>>>(dx, x, dout, n);
  NUPIPE_CUDA_LAUNCH_CHECK(gelu_backward_kernel);
}

void adamw(cudaStream_t s, float* param, const float* grad, float* m, float* v, int64_t n,
           float beta1, float beta2, float eps, float step, float inv_sqrt_c2, float decay) {
  NUPIPE_CHECK(n >= 0, "adamw: negative size");
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, s>>>(param, grad, m, v, n, beta1, beta2, eps, step,
                                                inv_sqrt_c2, decay);
  NUPIPE_CUDA_LAUNCH_CHECK(adamw_kernel);
}

}  // namespace nupipe::cuda
