// backend.h: the device interface every layer computes through: accounted allocation,
// copies, row-major GEMM and the transformer kernels. cpu/ is the fp32 reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/tensor.h"

namespace nupipe::runtime {

// All pointers are device pointers of the backend; all matrices are row-major. Kernels that
// "accumulate" add into their output (gradients summed over microbatches).
//
// Precision: operands written `DevPtr` / `ConstDevPtr` may be f32 or bf16, independently of
// each other; every kernel reads its inputs, computes in fp32 (reductions in double on the cpu
// backend) and rounds each output once, to nearest even, where it is bf16. LayerNorm's mean
// and rstd, parameter gradients, the loss's logits and the optimizer state are fp32 (`float*`).
// So one layer runs in fp32 or bf16 by the dtype of the tensors it is given.
//
// Ordering: every call is ordered after the calls before it on this backend, as on one CUDA
// stream; the cpu backend runs them at once. A GPU backend will add synchronize() and events
// (record on one stream, wait on another: the communicator's) behind this same interface;
// the kernels' signatures do not change.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- memory (accounted) ---
  void* allocate(size_t bytes, MemTag tag);
  void release(void* ptr, size_t bytes, MemTag tag);
  MemoryAccounting& memory() { return memory_; }
  const MemoryAccounting& memory() const { return memory_; }
  // From now on, refuse (usage_error, exit 2) an allocation that would take the bytes held
  // under all tags over `bytes` (0: no limit), naming `owner` ("stage 1, rank 3"), the tag and
  // what each tag holds, before any memory is taken.
  void set_memory_limit(int64_t bytes, std::string owner);

  virtual void fill_zero(void* dst, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Host memory for staging copies (checkpoint I/O): page-locked where the device copies from
  // it directly (cuda: cudaMallocHost; a pageable buffer would be staged again by the driver),
  // plain aligned memory on the cpu. Not under the allocator's tags (the host's, not the
  // device's); the caller bounds it. release_host_staging(nullptr) does nothing.
  virtual void* allocate_host_staging(size_t bytes);
  virtual void release_host_staging(void* ptr);
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // dst = src elementwise across dtypes (f32 -> bf16 rounds to nearest even; bf16 -> f32 exact).
  virtual void convert(DevPtr dst, ConstDevPtr src, int64_t n) = 0;

  // --- BLAS ---
  // C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides.
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    ConstDevPtr A, int64_t lda, ConstDevPtr B, int64_t ldb, float beta,
                    DevPtr C, int64_t ldc) = 0;
  // `batch` independent GEMMs, matrix i at A + i*stride_a etc.
  virtual void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, ConstDevPtr A, int64_t lda, int64_t stride_a,
                            ConstDevPtr B, int64_t ldb, int64_t stride_b, float beta, DevPtr C,
                            int64_t ldc, int64_t stride_c, int64_t batch) = 0;

  // --- elementwise and reductions ---
  virtual void add(DevPtr out, ConstDevPtr a, ConstDevPtr b, int64_t n) = 0;  // out = a + b
  virtual void accumulate(DevPtr y, ConstDevPtr x, int64_t n) = 0;            // y += x
  virtual void scale(float* x, float s, int64_t n) = 0;                       // x *= s
  virtual double sum_squares(const float* x, int64_t n) = 0;                  // in double
  virtual bool all_finite(const float* x, int64_t n) = 0;

  // --- layer kernels ---
  // out[N,C] = wte[tokens[i]] + wpe[i % T]; wpe (and dwpe below) null: no position table.
  virtual void embedding_forward(DevPtr out, const int32_t* tokens, ConstDevPtr wte,
                                 ConstDevPtr wpe, int64_t N, int64_t T, int64_t C) = 0;
  // dwte[tokens[i]] += dout[i]; dwpe[i % T] += dout[i]
  virtual void embedding_backward(float* dwte, float* dwpe, ConstDevPtr dout,
                                  const int32_t* tokens, int64_t N, int64_t T, int64_t C) = 0;
  // Per row: out = (x - mean) * rstd * w + b; saves mean and rstd [N].
  virtual void layernorm_forward(DevPtr out, float* mean, float* rstd, ConstDevPtr x,
                                 ConstDevPtr w, ConstDevPtr b, int64_t N, int64_t C,
                                 float eps) = 0;
  // dx = (overwritten); dw, db accumulate.
  virtual void layernorm_backward(DevPtr dx, float* dw, float* db, ConstDevPtr dout,
                                  ConstDevPtr x, ConstDevPtr w, const float* mean,
                                  const float* rstd, int64_t N, int64_t C) = 0;
  // The two parts of layernorm_backward, for a backward split into an input-gradient and a
  // weight-gradient pass: each writes bit for bit what the fused kernel writes to its outputs.
  // dx = (overwritten).
  virtual void layernorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x,
                                        ConstDevPtr w, const float* mean, const float* rstd,
                                        int64_t N, int64_t C) = 0;
  // dw, db accumulate.
  virtual void layernorm_backward_weight(float* dw, float* db, ConstDevPtr dout, ConstDevPtr x,
                                         const float* mean, const float* rstd, int64_t N,
                                         int64_t C) = 0;
  // RMSNorm (llama), per row: out = x * rstd * w with rstd = (mean(x^2) + eps)^-1/2 (fp32,
  // saved [N]). Its backward is two kernels (input part, weight part), each the whole of its
  // outputs: dx = (overwritten); dw accumulates.
  virtual void rmsnorm_forward(DevPtr out, float* rstd, ConstDevPtr x, ConstDevPtr w, int64_t N,
                               int64_t C, float eps) = 0;
  virtual void rmsnorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, ConstDevPtr w,
                                      const float* rstd, int64_t N, int64_t C) = 0;
  virtual void rmsnorm_backward_weight(float* dw, ConstDevPtr dout, ConstDevPtr x,
                                       const float* rstd, int64_t N, int64_t C) = 0;
  // Rotary position embedding in place (Hugging Face Llama's rotate-half convention): in each
  // row i of x (row stride ld; position i % T), each of the first `heads` heads of D columns
  // has dimension d < D/2 and d + D/2 rotated by the angle (i % T) * theta^(-2d/D), the
  // angles computed in double. inverse: rotated back (the transpose; rope's backward).
  virtual void rope(DevPtr x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D,
                    float theta, bool inverse) = 0;
  // SwiGLU: out[N,F] = silu(in[:, :F]) * in[:, F:] for in [N, 2F]; its backward writes
  // din [N, 2F] (all of it) from the forward's input and dout [N, F].
  virtual void swiglu_forward(DevPtr out, ConstDevPtr in, int64_t N, int64_t F) = 0;
  virtual void swiglu_backward(DevPtr din, ConstDevPtr in, ConstDevPtr dout, int64_t N,
                               int64_t F) = 0;
  // out[N,C] += b[C]
  virtual void add_bias(DevPtr out, ConstDevPtr b, int64_t N, int64_t C) = 0;
  // db[C] += sum_rows dout[N,C]
  virtual void bias_backward(float* db, ConstDevPtr dout, int64_t N, int64_t C) = 0;
  // GELU, tanh approximation (GPT-2).
  virtual void gelu_forward(DevPtr out, ConstDevPtr x, int64_t n) = 0;
  virtual void gelu_backward(DevPtr dx, ConstDevPtr x, ConstDevPtr dout, int64_t n) = 0;
  // In place over `rows` independent [T,T] score matrices: p = softmax(scale * s) with the
  // causal mask (column j > row i gets probability 0).
  virtual void causal_softmax_forward(DevPtr p, ConstDevPtr s, int64_t rows, int64_t T,
                                      float scale) = 0;
  // ds = scale * p * (dp - rowsum(dp * p)), masked entries 0. ds may alias dp.
  virtual void causal_softmax_backward(DevPtr ds, ConstDevPtr p, ConstDevPtr dp, int64_t rows,
                                       int64_t T, float scale) = 0;
  // A linear layer's forward: y[N,out] = x[N,in] w[out,in]^T + b[out] + beta y. With gelu_out
  // (beta == 0), also gelu_out = gelu(y), y keeping the pre-activation GELU's backward reads.
  // This default composes gemm, add_bias and gelu_forward (a bf16 y is rounded after the
  // product and again after the bias); a backend may fuse them into the GEMM's epilogue
  // (cuda: cuBLASLt BIAS / GELU_AUX_BIAS, rounding once), within the same tolerances.
  virtual void linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                              int64_t in, int64_t out, float beta, DevPtr gelu_out);
  // Fused causal attention (flash-style: the [T,T] scores are never stored). qkv is
  // [B*T, (H + 2 Hkv) D]: the H query heads, then Hkv key heads and Hkv value heads, D columns
  // each; query head h reads key/value head h / (H / Hkv) (grouped-query attention; Hkv = H:
  // multi-head, qkv [B*T, 3C] with C = H*D). out is [B*T, C], head h at columns h*D. lse
  // [B*H*T] (fp32) receives each query row's log-sum-exp of its scaled, causally masked
  // scores, for backward. Equal, up to fp32 summation order, to softmax(scale * q k^T, causal)
  // v per head (the unfused GEMM + causal_softmax path).
  virtual void attention_forward(DevPtr out, float* lse, ConstDevPtr qkv, int64_t B, int64_t T,
                                 int64_t H, int64_t Hkv, int64_t D, float scale) = 0;
  // Writes dqkv (all of it) from dout [B*T, C], the forward's qkv, out and lse; a key/value
  // head's gradient sums its query heads'. delta [B*H*T] (fp32) is the caller's scratch:
  // rowsum(dout * out) per query row and head. The probabilities are recomputed from lse;
  // every sum runs in a fixed order (deterministic, the same on every call).
  virtual void attention_backward(DevPtr dqkv, float* delta, ConstDevPtr dout, ConstDevPtr qkv,
                                  ConstDevPtr out, const float* lse, int64_t B, int64_t T,
                                  int64_t H, int64_t Hkv, int64_t D, float scale) = 0;
  // For each row i of logits[N,V]: loss_i = logsumexp - logit[target]; writes the gradient
  // dlogits = (softmax - onehot) * dloss (in place over logits when dlogits == logits).
  // Returns sum_i loss_i in double.
  virtual double cross_entropy_forward_backward(float* dlogits, const float* logits,
                                                const int32_t* targets, int64_t N, int64_t V,
                                                float dloss) = 0;
  // Forward only: sum of per-row losses.
  virtual double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                                       int64_t V) = 0;

  // --- optimizer ---
  // AdamW on n elements of fp32 master weights: m, v moments; bias corrections c1 = 1 - b1^t,
  // c2 = 1 - b2^t.
  virtual void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, float c1,
                     float c2) = 0;

  // Threads used by host-side compute (cpu backend); ignored elsewhere.
  virtual void set_threads(int threads) = 0;
  // Host-side compute flushes subnormal results and inputs to zero (x86 FTZ/DAZ) on every
  // compute thread; ignored elsewhere. Returns whether this backend did it.
  virtual bool set_flush_denormals(bool on) = 0;
  // linear_forward fuses its bias (and GELU) into the GEMM's epilogue where the backend has
  // one (runtime.gemm_epilogues); ignored elsewhere.
  virtual void set_gemm_epilogues(bool on) {}

 protected:
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_release(void* ptr) = 0;

 private:
  MemoryAccounting memory_;
  int64_t limit_ = 0;
  std::string owner_;
};

// Constructs the backend named by runtime.device ("cpu", or "cuda" when built with it).
// local_rank: this process's rank among those on its host; the cuda backend takes GPU
// local_rank modulo the GPUs visible (ranks beyond them share GPUs, round robin).
std::unique_ptr<Backend> make_backend(const std::string& device, int local_rank = 0);

// Host round trips, mostly for tests and I/O: fp32 on the host whatever the tensor's dtype
// (bf16 widened exactly on the way out, rounded to nearest even on the way in).
std::vector<float> to_host(const Tensor& t);
std::vector<int32_t> to_host_i32(const Tensor& t);
void from_host(Tensor& t, const std::vector<float>& values);
void from_host(Tensor& t, const std::vector<int32_t>& values);

}  // namespace nupipe::runtime
