// cuda_backend.h: the CUDA backend: one device, one stream owning every kernel and copy,
// cuBLASLt GEMMs with fp32 accumulation, custom kernels with the cpu kernels' semantics on
// f32/bf16 operands, and a caching device allocator under Backend's per-tag accounting.
#pragma once

#include <memory>
#include <string>

#include "runtime/backend.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers in every includer

namespace nupipe::cuda {
class CachingAllocator;
class Gemm;
}  // namespace nupipe::cuda

namespace nupipe::runtime {

class CudaBackend final : public Backend {
 public:
  // device < 0: the calling thread's current device (0 unless cudaSetDevice was called).
  // Throws nupipe::Error (with a hint) when there is no usable device.
  explicit CudaBackend(int device = -1);
  ~CudaBackend() override;  // synchronises, then frees the cached blocks
  std::string name() const override { return "cuda"; }

  // Devices visible to this process; 0 with the runtime's reason in *why (no driver, no
  // device, CUDA_VISIBLE_DEVICES empty...). Never throws.
  static int device_count(std::string* why = nullptr);
  // "cuda (sm_80, sm_90)": the architectures this build carries kernels for.
  static std::string build_info();

  void fill_zero(void* dst, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;  // returns when done
  void copy_to_host(void* dst, const void* src, size_t bytes) override;    // returns when done
  void* allocate_host_staging(size_t bytes) override;  // page-locked (cudaMallocHost)
  void release_host_staging(void* ptr) override;
  void copy(void* dst, const void* src, size_t bytes) override;  // overlap allowed (memmove)
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
  double sum_squares(const float* x, int64_t n) override;  // synchronises (one copy to host)
  bool all_finite(const float* x, int64_t n) override;     // synchronises (one copy to host)

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
  // The cos/sin tables are computed on the host in double (as the cpu kernel's) and uploaded
  // per call (one synchronising copy).
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
  // cuBLASLt's BIAS / GELU_AUX_BIAS epilogues when x, w, b and y share one dtype and they are
  // on (set_gemm_epilogues); otherwise, or where cuBLASLt has no algorithm, Backend's
  // composition.
  void linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                      int64_t n_in, int64_t n_out, float beta, DevPtr gelu_out) override;
  void attention_forward(DevPtr out, float* lse, ConstDevPtr qkv, int64_t B, int64_t T,
                         int64_t H, int64_t Hkv, int64_t D, float scale) override;
  void attention_backward(DevPtr dqkv, float* delta, ConstDevPtr dout, ConstDevPtr qkv,
                          ConstDevPtr out, const float* lse, int64_t B, int64_t T, int64_t H,
                          int64_t Hkv, int64_t D, float scale) override;
  // Both synchronise: the loss sum is reduced on the device and copied to the host once per
  // call (architecture notes: a device-side running sum, read once per step, comes later).
  double cross_entropy_forward_backward(float* dlogits, const float* logits,
                                        const int32_t* targets, int64_t N, int64_t V,
                                        float dloss) override;
  double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                               int64_t V) override;

  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
             float beta1, float beta2, float eps, float weight_decay, float c1,
             float c2) override;

  void set_threads(int) override {}  // no host-side compute
  // Device kernels keep IEEE subnormals (built without -ftz): only "off" is honoured.
  bool set_flush_denormals(bool on) override { return !on; }
  void set_gemm_epilogues(bool on) override { epilogues_ = on; }

  // Waits for everything queued so far.
  void synchronize();
  CUstream_st* stream() const { return stream_; }
  int device() const { return device_; }
  // The device's UUID as hex ("GPU-" + 32 digits): an identity that holds across processes
  // whatever CUDA_VISIBLE_DEVICES each one sees.
  std::string device_uuid() const;
  const cuda::CachingAllocator& allocator() const { return *alloc_; }
  int64_t gemm_fallbacks() const;

 protected:
  void* raw_allocate(size_t bytes) override;
  void raw_release(void* ptr) override;

 private:
  double cross_entropy(float* dlogits, const float* logits, const int32_t* targets, int64_t N,
                       int64_t V, float dloss);

  int device_ = 0;
  bool epilogues_ = true;  // linear_forward through cuBLASLt epilogues
  CUstream_st* stream_ = nullptr;
  std::unique_ptr<cuda::CachingAllocator> alloc_;
  std::unique_ptr<cuda::Gemm> gemm_;
};

}  // namespace nupipe::runtime
