// cpu_backend.h: the reference backend: bf16 products through oneDNN (runtime/cpu/onednn_gemm.h),
// fp32 ones through OpenBLAS sgemm, OpenMP loops in fp32 for the rest (runtime/cpu/cpu_kernels.h),
// bf16 operands widened around them and rounded back (runtime/cpu/staging.h). Runs everywhere.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "runtime/backend.h"
#include "runtime/cpu/onednn_gemm.h"

namespace nupipe::runtime {

class CpuBackend : public Backend {
 public:
  CpuBackend();
  ~CpuBackend() override;
  std::string name() const override { return "cpu"; }

  void fill_zero(void* dst, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void convert(DevPtr dst, ConstDevPtr src, int64_t n) override;

  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            ConstDevPtr A, int64_t lda, ConstDevPtr B, int64_t ldb, float beta, DevPtr C,
            int64_t ldc) override;
  void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    ConstDevPtr A, int64_t lda, int64_t stride_a, ConstDevPtr B, int64_t ldb,
                    int64_t stride_b, float beta, DevPtr C, int64_t ldc, int64_t stride_c,
                    int64_t batch) override;

  void add(DevPtr out, ConstDevPtr a, ConstDevPtr b, int64_t n) override;
  void accumulate(DevPtr y, ConstDevPtr x, int64_t n) override;
  void scale(float* x, float s, int64_t n) override;
  double sum_squares(const float* x, int64_t n) override;
  bool all_finite(const float* x, int64_t n) override;

  void embedding_forward(DevPtr out, const int32_t* tokens, ConstDevPtr wte, ConstDevPtr wpe,
                         int64_t N, int64_t T, int64_t C) override;
  void embedding_backward(float* dwte, float* dwpe, ConstDevPtr dout, const int32_t* tokens,
                          int64_t N, int64_t T, int64_t C) override;
  void layernorm_forward(DevPtr out, float* mean, float* rstd, ConstDevPtr x, ConstDevPtr w,
                         ConstDevPtr b, int64_t N, int64_t C, float eps) override;
  void layernorm_backward(DevPtr dx, float* dw, float* db, ConstDevPtr dout, ConstDevPtr x,
                          ConstDevPtr w, const float* mean, const float* rstd, int64_t N,
                          int64_t C) override;
  void layernorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, ConstDevPtr w,
                                const float* mean, const float* rstd, int64_t N,
                                int64_t C) override;
  void layernorm_backward_weight(float* dw, float* db, ConstDevPtr dout, ConstDevPtr x,
                                 const float* mean, const float* rstd, int64_t N,
                                 int64_t C) override;
  void rmsnorm_forward(DevPtr out, float* rstd, ConstDevPtr x, ConstDevPtr w, int64_t N,
                       int64_t C, float eps) override;
  void rmsnorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, ConstDevPtr w,
                              const float* rstd, int64_t N, int64_t C) override;
  void rmsnorm_backward_weight(float* dw, ConstDevPtr dout, ConstDevPtr x, const float* rstd,
                               int64_t N, int64_t C) override;
  void rope(DevPtr x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D, float theta,
            bool inverse) override;
  void swiglu_forward(DevPtr out, ConstDevPtr in, int64_t N, int64_t F) override;
  void swiglu_backward(DevPtr din, ConstDevPtr in, ConstDevPtr dout, int64_t N,
                       int64_t F) override;
  void add_bias(DevPtr out, ConstDevPtr b, int64_t N, int64_t C) override;
  void bias_backward(float* db, ConstDevPtr dout, int64_t N, int64_t C) override;
  void gelu_forward(DevPtr out, ConstDevPtr x, int64_t n) override;
  void gelu_backward(DevPtr dx, ConstDevPtr x, ConstDevPtr dout, int64_t n) override;
  void causal_softmax_forward(DevPtr p, ConstDevPtr s, int64_t rows, int64_t T,
                              float scale) override;
  void causal_softmax_backward(DevPtr ds, ConstDevPtr p, ConstDevPtr dp, int64_t rows, int64_t T,
                               float scale) override;
  // In fp32 throughout (bf16 x bf16 products accumulated in fp32 by oneDNN, other bf16 operands
  // staged), y rounded once after the bias and gelu_out computed from the fp32 pre-activation:
  // the semantics of a fused epilogue. The bias is oneDNN's bias; GELU is not fused (the op
  // keeps the pre-activation too, and oneDNN's gelu_tanh is its own approximation of tanh).
  void linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                      int64_t n_in, int64_t n_out, float beta, DevPtr gelu_out) override;
  void attention_forward(DevPtr out, float* lse, ConstDevPtr qkv, int64_t B, int64_t T,
                         int64_t H, int64_t Hkv, int64_t D, float scale) override;
  void attention_backward(DevPtr dqkv, float* delta, ConstDevPtr dout, ConstDevPtr qkv,
                          ConstDevPtr out, const float* lse, int64_t B, int64_t T, int64_t H,
                          int64_t Hkv, int64_t D, float scale) override;
  double cross_entropy_forward_backward(float* dlogits, const float* logits,
                                        const int32_t* targets, int64_t N, int64_t V,
                                        float dloss) override;
  double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                               int64_t V) override;

  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
             float beta1, float beta2, float eps, float weight_decay, float c1,
             float c2) override;

  void set_threads(int threads) override;
  bool set_flush_denormals(bool on) override;
  int threads() const { return threads_; }

  // Which GEMM kernels run, for the start-up log: "bf16 onednn 2.6.3 brg:avx512_core_bf16
  // (isa avx512_core_bf16), fp32 openblas", or where oneDNN has no bf16 kernel here,
  // "bf16 widened to fp32 (...)". Creates the probe primitive at the current thread count.
  std::string gemm_info();
  cpu::OnednnGemm& onednn() { return *onednn_; }

 protected:
  void* raw_allocate(size_t bytes) override;
  void raw_release(void* ptr) override;

 private:
  int threads_;
  bool flush_denormals_ = false;
  std::unique_ptr<cpu::OnednnGemm> onednn_;
  // bf16 products oneDNN refused, computed by the staged fp32 path instead (logged once).
  void note_refusal(const char* what, int64_t M, int64_t N, int64_t K);
  std::atomic<bool> refusal_logged_{false};
  bool apply_flush_denormals();  // on the calling thread and every OpenMP thread
};

}  // namespace nupipe::runtime
