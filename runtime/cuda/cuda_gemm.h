// cuda_gemm.h: row-major (batched, strided) GEMM for CudaBackend through cuBLASLt with fp32
// accumulation (CUBLAS_COMPUTE_32F) for any mix of f32/bf16 A, B, C.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/caching_allocator.h"
#include "runtime/cuda/cuda_kernels.h"

struct cublasLtContext;
struct cublasContext;

namespace nupipe::cuda {

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same memory read
// column-major is each matrix's transpose, so the call swaps A and B (and M and N) and keeps
// each operand's op. cuBLASLt computes the (A, B, C) dtype combinations (f32, f32, f32),
// (bf16, bf16, bf16) and (bf16, bf16, f32) directly; any other mix first widens the bf16
// operands to fp32 scratch (exact) and, for a bf16 C, computes into an fp32 copy of C that is
// rounded back once. A bf16 C is rounded once: split-K algorithms may only reduce their parts
// in fp32 (the compute type), never in C's dtype. Where cuBLASLt's heuristic offers no
// algorithm for a layout (odd strides or alignments), cublasGemmStridedBatchedEx runs it with
// the same compute type (counted: fallbacks()).
class Gemm {
 public:
  Gemm(cudaStream_t stream, CachingAllocator& alloc);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, In A, int64_t lda,
           int64_t sa, In B, int64_t ldb, int64_t sb, float beta, Out C, int64_t ldc, int64_t sc,
           int64_t batch);

  // A linear layer's forward with its bias (and GELU) in cuBLASLt's epilogue: row-major
  // y[M,N] = x[M,K] w[N,K]^T + bias[N] (+ beta y), every operand of y's dtype; with gelu_out
  // (beta must be 0), gelu_out = gelu(that) and y receives the pre-activation. A bf16 output
  // is rounded once, after the bias. Returns false, computing nothing, where cuBLASLt offers
  // no algorithm (the caller composes the unfused ops).
  bool linear(int64_t M, int64_t N, int64_t K, In x, In w, In bias, float beta, Out y,
              Out gelu_out);

  int64_t fallbacks() const { return fallbacks_; }  // GEMMs cuBLASLt found no algorithm for

 private:
  struct Epilogue {
    const void* bias;  // D's dtype, one per output column (row-major)
    void* gelu_out;    // nullptr: bias only
  };
  // Column-major D = alpha op(A) op(B) + beta C through cuBLASLt, with an optional epilogue;
  // false when its heuristic offers no algorithm.
  bool lt_matmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, In A,
                 int64_t lda, int64_t sa, In B, int64_t ldb, int64_t sb, float beta, Out C,
                 int64_t ldc, int64_t sc, int64_t batch, const Epilogue* ep);
  // Column-major D = alpha op(A) op(B) + beta D on natively supported dtypes.
  void column_major(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, In A,
                    int64_t lda, int64_t sa, In B, int64_t ldb, int64_t sb, float beta, Out C,
                    int64_t ldc, int64_t sc, int64_t batch);

  cudaStream_t stream_;
  CachingAllocator& alloc_;
  cublasLtContext* lt_ = nullptr;
  cublasContext* blas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  int64_t fallbacks_ = 0;
};

}  // namespace nupipe::cuda
