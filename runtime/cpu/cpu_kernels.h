// cpu_kernels.h: the fp32 reference kernels behind CpuBackend, on host float arrays. The
// backend widens bf16 operands to fp32 around them (runtime/cpu/staging.h); semantics are
// those of the Backend methods of the same names (runtime/backend.h).
#pragma once

#include <cstdint>

namespace nupipe::runtime::cpu {

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_batched(int threads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, int64_t sa, const float* B, int64_t ldb,
                  int64_t sb, float beta, float* C, int64_t ldc, int64_t sc, int64_t batch);

void add(float* out, const float* a, const float* b, int64_t n);
void accumulate(float* y, const float* x, int64_t n);
void scale(float* x, float s, int64_t n);
double sum_squares(const float* x, int64_t n);
bool all_finite(const float* x, int64_t n);

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t N, int64_t T, int64_t C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t N, int64_t T, int64_t C);
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t N, int64_t C, float eps);
void layernorm_backward(int threads, float* dx, float* dw, float* db, const float* dout,
                        const float* x, const float* w, const float* mean, const float* rstd,
                        int64_t N, int64_t C);
// The fused backward's two parts, each bitwise what the fused kernel computes.
void layernorm_backward_input(float* dx, const float* dout, const float* x, const float* w,
                              const float* mean, const float* rstd, int64_t N, int64_t C);
void layernorm_backward_weight(int threads, float* dw, float* db, const float* dout,
                               const float* x, const float* mean, const float* rstd, int64_t N,
                               int64_t C);
// RMSNorm (llama): the weight part and the input part of the backward are separate kernels.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N,
                     int64_t C, float eps);
void rmsnorm_backward_input(float* dx, const float* dout, const float* x, const float* w,
                            const float* rstd, int64_t N, int64_t C);
void rmsnorm_backward_weight(int threads, float* dw, const float* dout, const float* x,
                             const float* rstd, int64_t N, int64_t C);
// Rotary embedding in place over `heads` heads of D columns at the start of each row (row
// stride ld) of x [N, ld]; row i is position i % T. inverse: the transposed rotation.
void rope(float* x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D, float theta,
          bool inverse);
// SwiGLU: out[N,F] = silu(in[:, :F]) * in[:, F:]; and its backward into din [N, 2F].
void swiglu_forward(float* out, const float* in, int64_t N, int64_t F);
void swiglu_backward(float* din, const float* in, const float* dout, int64_t N, int64_t F);
void add_bias(float* out, const float* b, int64_t N, int64_t C);
void bias_backward(int threads, float* db, const float* dout, int64_t N, int64_t C);
void gelu_forward(float* out, const float* x, int64_t n);
void gelu_backward(float* dx, const float* x, const float* dout, int64_t n);
// One row: p[0, n) = softmax(scale * s[0, n)) (max, exp, double sum), p[n, len) = 0; returns
// the row's log-sum-exp of scale * s. p may be s. The unfused and fused attention's softmax.
float softmax_row(float* p, const float* s, int64_t n, int64_t len, float scale);
void causal_softmax_forward(float* p, const float* s, int64_t rows, int64_t T, float scale);
void causal_softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T,
                             float scale);
double cross_entropy_forward_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      int64_t N, int64_t V, float dloss);
double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N, int64_t V);
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
           float beta2, float eps, float weight_decay, float c1, float c2);

}  // namespace nupipe::runtime::cpu
