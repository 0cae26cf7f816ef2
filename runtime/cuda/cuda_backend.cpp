// cuda_backend.cpp: CudaBackend: device and stream setup, memory and copies on the stream, and
// the typed Backend interface over the launchers of cuda_kernels.h and cuda_gemm.h.
#include "runtime/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "runtime/cuda/caching_allocator.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_gemm.h"
#include "runtime/cuda/cuda_kernels.h"

namespace nupipe::runtime {

namespace {

cuda::In in(ConstDevPtr p, const char* what) {
  if (p.dtype != DType::f32 && p.dtype != DType::bf16) {
    NUPIPE_FAIL(ExitCode::internal, what,
                std::string("a kernel operand of dtype ") + dtype_name(p.dtype) +
                    " (f32 or bf16 expected)",
                "");
  }
  return {p.ptr, p.dtype == DType::bf16};
}
cuda::Out out(DevPtr p, const char* what) {
  const cuda::In i = in(p, what);
  return {p.ptr, i.bf16};
}
}  // namespace

int CudaBackend::device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount returned 0 devices";
  return n;
}

CudaBackend::CudaBackend(int device) {
  std::string why;
  const int n = device_count(&why);
  if (n == 0) {
    throw Error(ExitCode::usage, "runtime.device = \"cuda\": no CUDA device on " + where_am_i() +
                                     " (" + why + ")",
                "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use runtime.device = \"cpu\"");
  }
  if (device >= 0) {
    NUPIPE_CHECK(device < n, "CudaBackend: device " + std::to_string(device) + " of " +
                                 std::to_string(n));
    NUPIPE_CUDA_CHECK(cudaSetDevice(device));
  }
  NUPIPE_CUDA_CHECK(cudaGetDevice(&device_));
  cudaStream_t s = nullptr;
  NUPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
  alloc_ = std::make_unique<cuda::CachingAllocator>();
  gemm_ = std::make_unique<cuda::Gemm>(stream_, *alloc_);
}

std::string CudaBackend::device_uuid() const {
  cudaDeviceProp prop{};
  NUPIPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  static const char* hex = "0123456789abcdef";
  std::string out = "GPU-";
  for (unsigned char byte : prop.uuid.bytes) {
    out += hex[byte >> 4];
    out += hex[byte & 15];
  }
  return out;
}

CudaBackend::~CudaBackend() {
  (void)cudaStreamSynchronize(stream_);  // no throwing from a destructor
  gemm_.reset();
  alloc_.reset();
  (void)cudaStreamDestroy(stream_);
}

void CudaBackend::synchronize() { NUPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

int64_t CudaBackend::gemm_fallbacks() const { return gemm_->fallbacks(); }

void* CudaBackend::raw_allocate(size_t bytes) { return alloc_->allocate(bytes); }
void CudaBackend::raw_release(void* ptr) { alloc_->release(ptr); }

// ----------------------------------------------------------------------------------- copies

void CudaBackend::fill_zero(void* dst, size_t bytes) {
  if (bytes) NUPIPE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
}

// Host copies are ordered on the stream and return when complete, as the cpu backend's: the
// host buffer may be reused (or freed) at once.
void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  NUPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  synchronize();
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  NUPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  synchronize();
}

void* CudaBackend::allocate_host_staging(size_t bytes) {
  void* p = nullptr;
  NUPIPE_CUDA_CHECK(cudaMallocHost(&p, std::max<size_t>(bytes, 1)));
  return p;
}

void CudaBackend::release_host_staging(void* ptr) {
  if (ptr) cudaFreeHost(ptr);  // in a destructor: an error here has nowhere to go
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (!bytes || dst == src) return;
  const char* d = static_cast<const char*>(dst);
  const char* s = static_cast<const char*>(src);
  if (d < s + bytes && s < d + bytes) {  // overlapping: memmove through scratch
    cuda::ScratchBlock tmp(*alloc_, bytes);
    NUPIPE_CUDA_CHECK(cudaMemcpyAsync(tmp.get(), src, bytes, cudaMemcpyDeviceToDevice, stream_));
    NUPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, tmp.get(), bytes, cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  NUPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::convert(DevPtr dst, ConstDevPtr src, int64_t n) {
  NUPIPE_CHECK(dst.dtype != DType::i32 && src.dtype != DType::i32, "convert of i32");
  if (dst.dtype == src.dtype) {
    copy(dst.ptr, src.ptr, static_cast<size_t>(n) * dtype_size(src.dtype));
    return;
  }
  cuda::convert(stream_, out(dst, "convert"), in(src, "convert"), n);
}

// ------------------------------------------------------------------------------------ BLAS

void CudaBackend::gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       ConstDevPtr A, int64_t lda, ConstDevPtr B, int64_t ldb, float beta,
                       DevPtr C, int64_t ldc) {
  gemm_->run(ta, tb, M, N, K, alpha, in(A, "gemm A"), lda, 0, in(B, "gemm B"), ldb, 0, beta,
             out(C, "gemm C"), ldc, 0, 1);
}

void CudaBackend::gemm_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                               ConstDevPtr A, int64_t lda, int64_t sa, ConstDevPtr B,
                               int64_t ldb, int64_t sb, float beta, DevPtr C, int64_t ldc,
                               int64_t sc, int64_t batch) {
  gemm_->run(ta, tb, M, N, K, alpha, in(A, "gemm A"), lda, sa, in(B, "gemm B"), ldb, sb, beta,
             out(C, "gemm C"), ldc, sc, batch);
}

// ------------------------------------------------------------------ elementwise, reductions

void CudaBackend::add(DevPtr o, ConstDevPtr a, ConstDevPtr b, int64_t n) {
  cuda::add(stream_, out(o, "add"), in(a, "add"), in(b, "add"), n);
}

void CudaBackend::accumulate(DevPtr y, ConstDevPtr x, int64_t n) {
  cuda::accumulate(stream_, out(y, "accumulate"), in(x, "accumulate"), n);
}

void CudaBackend::scale(float* x, float s, int64_t n) { cuda::scale(stream_, x, s, n); }

double CudaBackend::sum_squares(const float* x, int64_t n) {
  cuda::ScratchBlock result(*alloc_, sizeof(double));
  cuda::ScratchBlock partial(*alloc_, cuda::sum_squares_scratch(n));
  cuda::sum_squares(stream_, result.as<double>(), x, n, partial.get());
  double r = 0.0;
  copy_to_host(&r, result.get(), sizeof r);
  return r;
}

bool CudaBackend::all_finite(const float* x, int64_t n) {
  cuda::ScratchBlock bad(*alloc_, sizeof(int));
  cuda::count_nonfinite(stream_, bad.as<int>(), x, n);
  int count = 0;
  copy_to_host(&count, bad.get(), sizeof count);
  return count == 0;
}

// --------------------------------------------------------------------------- layer kernels

void CudaBackend::embedding_forward(DevPtr o, const int32_t* tokens, ConstDevPtr wte,
                                    ConstDevPtr wpe, int64_t N, int64_t T, int64_t C) {
  cuda::embedding_forward(stream_, out(o, "embedding_forward"), tokens,
                          in(wte, "embedding_forward"),
                          wpe.ptr ? in(wpe, "embedding_forward") : cuda::In{}, N, T, C);
}

void CudaBackend::embedding_backward(float* dwte, float* dwpe, ConstDevPtr dout,
                                     const int32_t* tokens, int64_t N, int64_t T, int64_t C) {
  const size_t bytes = cuda::embedding_backward_scratch(N);
  cuda::ScratchBlock scratch(*alloc_, bytes);
  cuda::embedding_backward(stream_, dwte, dwpe, in(dout, "embedding_backward"), tokens, N, T, C,
                           scratch.get(), bytes);
}

void CudaBackend::layernorm_forward(DevPtr o, float* mean, float* rstd, ConstDevPtr x,
                                    ConstDevPtr w, ConstDevPtr b, int64_t N, int64_t C,
                                    float eps) {
  cuda::layernorm_forward(stream_, out(o, "layernorm_forward"), mean, rstd,
                          in(x, "layernorm_forward"), in(w, "layernorm_forward"),
                          in(b, "layernorm_forward"), N, C, eps);
}

void CudaBackend::layernorm_backward(DevPtr dx, float* dw, float* db, ConstDevPtr dout,
                                     ConstDevPtr x, ConstDevPtr w, const float* mean,
                                     const float* rstd, int64_t N, int64_t C) {
  cuda::ScratchBlock scratch(*alloc_, cuda::column_sums_scratch(N, C));
  cuda::layernorm_backward(stream_, out(dx, "layernorm_backward"), dw, db,
                           in(dout, "layernorm_backward"), in(x, "layernorm_backward"),
                           in(w, "layernorm_backward"), mean, rstd, N, C, scratch.get());
}

void CudaBackend::layernorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x,
                                           ConstDevPtr w, const float* mean, const float* rstd,
                                           int64_t N, int64_t C) {
  cuda::layernorm_backward_input(stream_, out(dx, "layernorm_backward_input"),
                                 in(dout, "layernorm_backward_input"),
                                 in(x, "layernorm_backward_input"),
                                 in(w, "layernorm_backward_input"), mean, rstd, N, C);
}

void CudaBackend::layernorm_backward_weight(float* dw, float* db, ConstDevPtr dout,
                                            ConstDevPtr x, const float* mean, const float* rstd,
                                            int64_t N, int64_t C) {
  cuda::ScratchBlock scratch(*alloc_, cuda::column_sums_scratch(N, C));
  cuda::layernorm_backward_weight(stream_, dw, db, in(dout, "layernorm_backward_weight"),
                                  in(x, "layernorm_backward_weight"), mean, rstd, N, C,
                                  scratch.get());
}

void CudaBackend::rmsnorm_forward(DevPtr o, float* rstd, ConstDevPtr x, ConstDevPtr w, int64_t N,
                                  int64_t C, float eps) {
  const char* what = "rmsnorm_forward";
  cuda::rmsnorm_forward(stream_, out(o, what), rstd, in(x, what), in(w, what), N, C, eps);
}

void CudaBackend::rmsnorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, ConstDevPtr w,
                                         const float* rstd, int64_t N, int64_t C) {
  const char* what = "rmsnorm_backward_input";
  cuda::rmsnorm_backward_input(stream_, out(dx, what), in(dout, what), in(x, what), in(w, what),
                               rstd, N, C);
}

void CudaBackend::rmsnorm_backward_weight(float* dw, ConstDevPtr dout, ConstDevPtr x,
                                          const float* rstd, int64_t N, int64_t C) {
  const char* what = "rmsnorm_backward_weight";
  cuda::rmsnorm_backward_weight(stream_, dw, in(dout, what), in(x, what), rstd, N, C);
}

void CudaBackend::rope(DevPtr x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D,
                       float theta, bool inverse) {
  const int64_t half = D / 2, positions = std::min(N, T);
  if (positions <= 0 || half <= 0) return;
  std::vector<float> table(static_cast<size_t>(2 * positions * half));  // cos, then sin
  for (int64_t t = 0; t < positions; ++t) {
    for (int64_t d = 0; d < half; ++d) {  // as the cpu kernel: the angle in double
      const double a = static_cast<double>(t) *
                       std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(d) / D);
      table[t * half + d] = static_cast<float>(std::cos(a));
      table[(positions + t) * half + d] = static_cast<float>(std::sin(a));
    }
  }
  cuda::ScratchBlock dev(*alloc_, table.size() * sizeof(float));
  copy_from_host(dev.get(), table.data(), table.size() * sizeof(float));
  cuda::rope(stream_, out(x, "rope"), dev.as<float>(), dev.as<float>() + positions * half, N, T,
             ld, heads, D, inverse);
}

void CudaBackend::swiglu_forward(DevPtr o, ConstDevPtr x, int64_t N, int64_t F) {
  cuda::swiglu_forward(stream_, out(o, "swiglu_forward"), in(x, "swiglu_forward"), N, F);
}

void CudaBackend::swiglu_backward(DevPtr din, ConstDevPtr x, ConstDevPtr dout, int64_t N,
                                  int64_t F) {
  const char* what = "swiglu_backward";
  cuda::swiglu_backward(stream_, out(din, what), in(x, what), in(dout, what), N, F);
}

void CudaBackend::add_bias(DevPtr o, ConstDevPtr b, int64_t N, int64_t C) {
  cuda::add_bias(stream_, out(o, "add_bias"), in(b, "add_bias"), N, C);
}

void CudaBackend::bias_backward(float* db, ConstDevPtr dout, int64_t N, int64_t C) {
  cuda::ScratchBlock scratch(*alloc_, cuda::column_sums_scratch(N, C));
  cuda::bias_backward(stream_, db, in(dout, "bias_backward"), N, C, scratch.get());
}

void CudaBackend::gelu_forward(DevPtr o, ConstDevPtr x, int64_t n) {
  cuda::gelu_forward(stream_, out(o, "gelu_forward"), in(x, "gelu_forward"), n);
}

void CudaBackend::gelu_backward(DevPtr dx, ConstDevPtr x, ConstDevPtr dout, int64_t n) {
  cuda::gelu_backward(stream_, out(dx, "gelu_backward"), in(x, "gelu_backward"),
                      in(dout, "gelu_backward"), n);
}

void CudaBackend::causal_softmax_forward(DevPtr p, ConstDevPtr s, int64_t rows, int64_t T,
                                         float scale) {
  cuda::causal_softmax_forward(stream_, out(p, "causal_softmax_forward"),
                               in(s, "causal_softmax_forward"), rows, T, scale);
}

void CudaBackend::causal_softmax_backward(DevPtr ds, ConstDevPtr p, ConstDevPtr dp,
                                          int64_t rows, int64_t T, float scale) {
  cuda::causal_softmax_backward(stream_, out(ds, "causal_softmax_backward"),
                                in(p, "causal_softmax_backward"),
                                in(dp, "causal_softmax_backward"), rows, T, scale);
}

void CudaBackend::linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                                 int64_t n_in, int64_t n_out, float beta, DevPtr gelu_out) {
  const char* what = "linear_forward";
  const DType t = y.dtype;
  const bool one_dtype = x.dtype == t && w.dtype == t && b.dtype == t &&
                         (!gelu_out.ptr || gelu_out.dtype == t);
  if (epilogues_ && one_dtype && N > 0 && n_in > 0 && n_out > 0 &&
      (!gelu_out.ptr || beta == 0.0f) &&
      gemm_->linear(N, n_out, n_in, in(x, what), in(w, what), in(b, what), beta, out(y, what),
                    gelu_out.ptr ? out(gelu_out, what) : cuda::Out{})) {
    return;
  }
  Backend::linear_forward(y, x, w, b, N, n_in, n_out, beta, gelu_out);
}

void CudaBackend::attention_forward(DevPtr o, float* lse, ConstDevPtr qkv, int64_t B, int64_t T,
                                    int64_t H, int64_t Hkv, int64_t D, float scale) {
  if (!cuda::fused_attention_supports(D)) {
    throw usage_error("runtime.attention = \"fused\" on cuda has kernels for head dims 16, 32, "
                      "64 and 128, not " + std::to_string(D),
                      "set runtime.attention = \"unfused\", or a d_model / n_head among them");
  }
  cuda::attention_forward(stream_, out(o, "attention_forward"), lse, in(qkv, "attention_forward"),
                          B, T, H, Hkv, D, scale);
}

void CudaBackend::attention_backward(DevPtr dqkv, float* delta, ConstDevPtr dout, ConstDevPtr qkv,
                                     ConstDevPtr o, const float* lse, int64_t B, int64_t T,
                                     int64_t H, int64_t Hkv, int64_t D, float scale) {
  const char* what = "attention_backward";
  cuda::attention_backward(stream_, out(dqkv, what), delta, in(dout, what), in(qkv, what),
                           in(o, what), lse, B, T, H, Hkv, D, scale);
}

// The per-row losses and their sum stay on the device; one 8-byte copy brings the sum back.
double CudaBackend::cross_entropy(float* dlogits, const float* logits, const int32_t* targets,
                                  int64_t N, int64_t V, float dloss) {
  if (N == 0) return 0.0;
  cuda::ScratchBlock rows(*alloc_, sizeof(double) * static_cast<size_t>(N + 1));
  double* row_loss = rows.as<double>();
  cuda::cross_entropy(stream_, row_loss, dlogits, logits, targets, N, V, dloss);
  cuda::sum_doubles(stream_, row_loss + N, row_loss, N);
  double total = 0.0;
  copy_to_host(&total, row_loss + N, sizeof total);
  return total;
}

double CudaBackend::cross_entropy_forward_backward(float* dlogits, const float* logits,
                                                   const int32_t* targets, int64_t N, int64_t V,
                                                   float dloss) {
  NUPIPE_CHECK(dlogits != nullptr, "cross_entropy_forward_backward without a gradient buffer");
  return cross_entropy(dlogits, logits, targets, N, V, dloss);
}

double CudaBackend::cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                                          int64_t V) {
  return cross_entropy(nullptr, logits, targets, N, V, 0.0f);
}

// ------------------------------------------------------------------------------- optimizer

void CudaBackend::adamw(float* param, const float* grad, float* m, float* v, int64_t n,
                        float lr, float beta1, float beta2, float eps, float weight_decay,
                        float c1, float c2) {
  // The per-call constants exactly as the cpu kernel computes them.
  const float step = lr / c1;
  const float inv_sqrt_c2 = 1.0f / std::sqrt(c2);
  const float decay = 1.0f - lr * weight_decay;
  cuda::adamw(stream_, param, grad, m, v, n, beta1, beta2, eps, step, inv_sqrt_c2, decay);
}

}  // namespace nupipe::runtime
