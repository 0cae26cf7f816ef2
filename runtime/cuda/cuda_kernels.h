// cuda_kernels.h: host launchers of CudaBackend's kernels (the .cu files: kernels first, these
// launchers after). Each takes the stream, checks its sizes and checks the launch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nupipe::cuda {

// A typed operand as the kernels see it: f32 or bf16 (the backend refuses other dtypes). The
// dtype is a runtime flag, uniform over a launch, so each kernel has one instantiation and
// every mix of operand dtypes the Backend interface allows.
struct In {
  const void* p = nullptr;
  bool bf16 = false;
};
struct Out {
  void* p = nullptr;
  bool bf16 = false;
};

// --- elementwise (cuda_elementwise.cu) ---
void convert(cudaStream_t s, Out dst, In src, int64_t n);
void add(cudaStream_t s, Out out, In a, In b, int64_t n);
void accumulate(cudaStream_t s, Out y, In x, int64_t n);
void scale(cudaStream_t s, float* x, float v, int64_t n);
// C[i*ldc + j] *= beta for i < M, j < N (beta == 0 writes 0, NaN or not): a GEMM with K = 0.
void scale_matrix(cudaStream_t s, Out c, int64_t M, int64_t N, int64_t ldc, int64_t stride,
                  int64_t batch, float beta);
void add_bias(cudaStream_t s, Out out, In b, int64_t N, int64_t C);
void gelu_forward(cudaStream_t s, Out out, In x, int64_t n);
void gelu_backward(cudaStream_t s, Out dx, In x, In dout, int64_t n);
// step = lr / c1, inv_sqrt_c2 = 1 / sqrt(c2), decay = 1 - lr * wd: computed by the caller on
// the host exactly as the cpu kernel does.
void adamw(cudaStream_t s, float* param, const float* grad, float* m, float* v, int64_t n,
           float beta1, float beta2, float eps, float step, float inv_sqrt_c2, float decay);

// --- reductions (cuda_reduce_kernels.cu); results stay on the device ---
size_t sum_squares_scratch(int64_t n);  // bytes of `scratch` the next call needs
void sum_squares(cudaStream_t s, double* out, const float* x, int64_t n, void* scratch);
// *bad = number of non-finite elements (*bad is zeroed first).
void count_nonfinite(cudaStream_t s, int* bad, const float* x, int64_t n);
// out[0] = sum of x[0..n) (double, fixed order).
void sum_doubles(cudaStream_t s, double* out, const double* x, int64_t n);

// --- embedding (cuda_embedding.cu) ---
void embedding_forward(cudaStream_t s, Out out, const int32_t* tokens, In wte, In wpe,
                       int64_t N, int64_t T, int64_t C);
size_t embedding_backward_scratch(int64_t N);
void embedding_backward(cudaStream_t s, float* dwte, float* dwpe, In dout,
                        const int32_t* tokens, int64_t N, int64_t T, int64_t C, void* scratch,
                        size_t scratch_bytes);

// --- layernorm and bias gradients (cuda_norm_kernels.cu) ---
void layernorm_forward(cudaStream_t s, Out out, float* mean, float* rstd, In x, In w, In b,
                       int64_t N, int64_t C, float eps);
size_t column_sums_scratch(int64_t N, int64_t C);
void layernorm_backward(cudaStream_t s, Out dx, float* dw, float* db, In dout, In x, In w,
                        const float* mean, const float* rstd, int64_t N, int64_t C,
                        void* scratch);
// layernorm_backward's two launches on their own (a backward split in two passes); together
// they are the fused call, bit for bit.
void layernorm_backward_input(cudaStream_t s, Out dx, In dout, In x, In w, const float* mean,
                              const float* rstd, int64_t N, int64_t C);
void layernorm_backward_weight(cudaStream_t s, float* dw, float* db, In dout, In x,
                               const float* mean, const float* rstd, int64_t N, int64_t C,
                               void* scratch);
void bias_backward(cudaStream_t s, float* db, In dout, int64_t N, int64_t C, void* scratch);

// --- the llama family's kernels (cuda_llama_kernels.cu); semantics as Backend's ---
void rmsnorm_forward(cudaStream_t s, Out out, float* rstd, In x, In w, int64_t N, int64_t C,
                     float eps);
void rmsnorm_backward_input(cudaStream_t s, Out dx, In dout, In x, In w, const float* rstd,
                            int64_t N, int64_t C);
void rmsnorm_backward_weight(cudaStream_t s, float* dw, In dout, In x, const float* rstd,
                             int64_t N, int64_t C);
// cos/sin: [positions, D/2] fp32 tables on the device (the backend computes them in double).
void rope(cudaStream_t s, Out x, const float* cos, const float* sin, int64_t N, int64_t T,
          int64_t ld, int64_t heads, int64_t D, bool inverse);
void swiglu_forward(cudaStream_t s, Out out, In in, int64_t N, int64_t F);
void swiglu_backward(cudaStream_t s, Out din, In in, In dout, int64_t N, int64_t F);

// --- attention (cuda_attention_kernels.cu) ---
void causal_softmax_forward(cudaStream_t s, Out p, In sc, int64_t rows, int64_t T, float scale);
void causal_softmax_backward(cudaStream_t s, Out ds, In p, In dp, int64_t rows, int64_t T,
                             float scale);

// --- fused attention (cuda_flash_attention.cu); layouts as Backend::attention_* ---
bool fused_attention_supports(int64_t head_dim);
void attention_forward(cudaStream_t s, Out out, float* lse, In qkv, int64_t B, int64_t T,
                       int64_t H, int64_t Hkv, int64_t D, float scale);
void attention_backward(cudaStream_t s, Out dqkv, float* delta, In dout, In qkv, In out,
                        const float* lse, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                        int64_t D, float scale);

// --- loss (cuda_loss_kernels.cu) ---
// row_loss[i] = logsumexp(logits[i]) - logits[i, targets[i]] (double); with dlogits, also
// dlogits = (softmax - onehot) * dloss (dlogits may be logits).
void cross_entropy(cudaStream_t s, double* row_loss, float* dlogits, const float* logits,
                   const int32_t* targets, int64_t N, int64_t V, float dloss);

}  // namespace nupipe::cuda
