// cpu_backend.h: the fp32 reference backend: OpenBLAS sgemm for matrix products and
// OpenMP loops for the kernels. Runs everywhere, CI included.
#pragma once

#include "runtime/backend.h"

namespace nupipe::runtime {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  std::string name() const override { return "cpu"; }

  void fill_zero(void* dst, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;

  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
            int64_t ldc) override;
  void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb,
                    int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c,
                    int64_t batch) override;

  void add(float* out, const float* a, const float* b, int64_t n) override;
  void accumulate(float* y, const float* x, int64_t n) override;
  void scale(float* x, float s, int64_t n) override;
  double sum_squares(const float* x, int64_t n) override;
  bool all_finite(const float* x, int64_t n) override;

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                         int64_t N, int64_t T, int64_t C) override;
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                          int64_t N, int64_t T, int64_t C) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, int64_t N, int64_t C, float eps) override;
  void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
                          const float* w, const float* mean, const float* rstd, int64_t N,
                          int64_t C) override;
  void add_bias(float* out, const float* b, int64_t N, int64_t C) override;
  void bias_backward(float* db, const float* dout, int64_t N, int64_t C) override;
  void gelu_forward(float* out, const float* x, int64_t n) override;
  void gelu_backward(float* dx, const float* x, const float* dout, int64_t n) override;
  void causal_softmax_forward(float* p, const float* s, int64_t rows, int64_t T,
                              float scale) override;
  void causal_softmax_backward(float* ds, const float* p, const float* dp, int64_t rows,
                               int64_t T, float scale) override;
  double cross_entropy_forward_backward(float* dlogits, const float* logits,
                                        const int32_t* targets, int64_t N, int64_t V,
                                        float dloss) override;
  double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                               int64_t V) override;

  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
             float beta1, float beta2, float eps, float weight_decay, float c1,
             float c2) override;

  void set_threads(int threads) override;
  int threads() const { return threads_; }

 protected:
  void* raw_allocate(size_t bytes) override;
  void raw_release(void* ptr) override;

 private:
  int threads_;
};

}  // namespace nupipe::runtime
