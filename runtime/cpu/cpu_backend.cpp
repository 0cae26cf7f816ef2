// cpu_backend.cpp: host memory, copies, and the typed Backend interface over the fp32 kernels:
// f32 operands go straight through, bf16 ones are staged (widened, computed in fp32, rounded
// back once). Products with both operands bf16 run oneDNN's bf16 matmul (fp32 accumulation,
// one rounding of a bf16 result); fp32 products run OpenBLAS's sgemm (measured as fast as
// oneDNN's fp32 matmul here, and bitwise what they always were: docs/precision.md); a mixed
// or refused bf16 product widens its bf16 operands and runs sgemm, the same semantics.
#include "runtime/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>
#include <spdlog/spdlog.h>
#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "runtime/check.h"
#include "runtime/cpu/cpu_attention.h"
#include "runtime/cpu/cpu_kernels.h"
#include "runtime/cpu/staging.h"

namespace nupipe::runtime {

namespace {
constexpr size_t kAlign = 64;

// Elements a row-major [rows, cols] matrix with row stride ld spans.
int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}
// ... and `batch` of them, `stride` elements apart.
int64_t extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
  return batch == 0 ? 0 : (batch - 1) * stride + extent(rows, cols, ld);
}
}  // namespace

CpuBackend::CpuBackend()
    : threads_(std::max(1, omp_get_max_threads())),
      onednn_(std::make_unique<cpu::OnednnGemm>(*this)) {}

CpuBackend::~CpuBackend() = default;

// One OpenMP pool for everything: our loops, OpenBLAS (its OpenMP build) and oneDNN (built on
// the same libgomp, it partitions each primitive for omp_get_max_threads() threads).
void CpuBackend::set_threads(int threads) {
  threads_ = std::max(1, threads);
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
  apply_flush_denormals();  // new threads take the mode too
  static bool logged = false;  // once per process: the kernels do not change between backends
  if (!logged) {
    if (auto log = spdlog::get("nupipe")) {
      logged = true;
      log->info("gemm: {}", gemm_info());
    }
  }
}

std::string CpuBackend::gemm_info() {
  const std::string impl = onednn_->probe();
  const std::string dnnl = "onednn " + cpu::OnednnGemm::version();
  return (impl.empty() ? "bf16 widened to fp32 and run by openblas sgemm (" + dnnl +
                             ": no bf16 instructions on isa " + cpu::OnednnGemm::isa() + ")"
                       : "bf16 " + dnnl + " " + impl + " (isa " + cpu::OnednnGemm::isa() + ")") +
         "; fp32 openblas sgemm";
}

void CpuBackend::note_refusal(const char* what, int64_t M, int64_t N, int64_t K) {
  // Without bf16 instructions every product takes the widened path: the start-up line says so.
  if (!cpu::OnednnGemm::native_bf16() || refusal_logged_.exchange(true)) return;
  if (auto log = spdlog::get("nupipe")) {
    log->info("gemm: oneDNN has no bf16 primitive here for {} [{} x {} x {}] (or its "
              "scratchpad exceeds the {} arena): such products are widened to fp32 (sgemm)",
              what, M, N, K, format_bytes(static_cast<double>(cpu::OnednnGemm::kArenaBytes)));
  }
}

bool CpuBackend::set_flush_denormals(bool on) {
  flush_denormals_ = on;
  return apply_flush_denormals();
}

// The mode is a per-thread register (MXCSR): set on this thread and on each thread of the
// OpenMP pool, which runs the kernels and (the OpenMP build of) OpenBLAS.
bool CpuBackend::apply_flush_denormals() {
#if defined(__x86_64__) || defined(__SSE__)
  constexpr unsigned kFtzDaz = 0x8040;  // MXCSR: flush-to-zero (bit 15), denormals-are-zero (6)
  const bool on = flush_denormals_;
  auto set = [on] { _mm_setcsr(on ? (_mm_getcsr() | kFtzDaz) : (_mm_getcsr() & ~kFtzDaz)); };
  set();
#pragma omp parallel num_threads(threads_)
  set();
  return true;
#else
  return !flush_denormals_;
#endif
}

void* CpuBackend::raw_allocate(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  if (!p) {
    NUPIPE_FAIL(ExitCode::internal, "aligned_alloc", "out of host memory allocating " +
                format_bytes(static_cast<double>(bytes)),
                "reduce model size, micro_batch or seq_len");
  }
  return p;
}

void CpuBackend::raw_release(void* ptr) { std::free(ptr); }

void CpuBackend::fill_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy(void* dst, const void* src, size_t n) { std::memmove(dst, src, n); }

void CpuBackend::convert(DevPtr dst, ConstDevPtr src, int64_t n) {
  NUPIPE_CHECK(dst.dtype != DType::i32 && src.dtype != DType::i32, "convert of i32");
  if (dst.dtype == src.dtype) {
    std::memmove(dst.ptr, src.ptr, n * dtype_size(src.dtype));
  } else if (dst.dtype == DType::bf16) {
    cpu::narrow(static_cast<uint16_t*>(dst.ptr), static_cast<const float*>(src.ptr), n);
  } else {
    cpu::widen(static_cast<float*>(dst.ptr), static_cast<const uint16_t*>(src.ptr), n);
  }
}

// ---------------------------------------------------------------------------------- BLAS

void CpuBackend::gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      ConstDevPtr A, int64_t lda, ConstDevPtr B, int64_t ldb, float beta,
                      DevPtr C, int64_t ldc) {
  if (A.dtype == DType::bf16 && B.dtype == DType::bf16) {
    cpu::MatmulDesc d;
    d.ta = ta, d.tb = tb, d.M = M, d.N = N, d.K = K, d.lda = lda, d.ldb = ldb, d.ldc = ldc;
    d.alpha = alpha, d.beta = beta, d.c = C.dtype;
    if (onednn_->run(d, A.ptr, B.ptr, C.ptr, nullptr)) return;
    if (K > 0) note_refusal("gemm", M, N, K);
  }
  cpu::Staging st;
  float* c = st.out(C, extent(M, N, ldc));
  const float* a = st.in(A, ta ? extent(K, M, lda) : extent(M, K, lda));
  const float* b = st.in(B, tb ? extent(N, K, ldb) : extent(K, N, ldb));
  cpu::gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void CpuBackend::gemm_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                              ConstDevPtr A, int64_t lda, int64_t sa, ConstDevPtr B, int64_t ldb,
                              int64_t sb, float beta, DevPtr C, int64_t ldc, int64_t sc,
                              int64_t batch) {
  if (A.dtype == DType::bf16 && B.dtype == DType::bf16) {
    cpu::MatmulDesc d;
    d.ta = ta, d.tb = tb, d.M = M, d.N = N, d.K = K, d.batch = batch;
    d.lda = lda, d.ldb = ldb, d.ldc = ldc, d.sa = sa, d.sb = sb, d.sc = sc;
    d.alpha = alpha, d.beta = beta, d.c = C.dtype;
    if (onednn_->run(d, A.ptr, B.ptr, C.ptr, nullptr)) return;
    if (K > 0) note_refusal("gemm_batched", M, N, K);
  }
  cpu::Staging st;
  float* c = st.out(C, extent(M, N, ldc, sc, batch));
  const float* a = st.in(A, ta ? extent(K, M, lda, sa, batch) : extent(M, K, lda, sa, batch));
  const float* b = st.in(B, tb ? extent(N, K, ldb, sb, batch) : extent(K, N, ldb, sb, batch));
  cpu::gemm_batched(threads_, ta, tb, M, N, K, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc,
                    batch);
}

// ------------------------------------------------------------------- elementwise, reductions

void CpuBackend::add(DevPtr out, ConstDevPtr a, ConstDevPtr b, int64_t n) {
  cpu::Staging st;
  cpu::add(st.out(out, n), st.in(a, n), st.in(b, n), n);
}

void CpuBackend::accumulate(DevPtr y, ConstDevPtr x, int64_t n) {
  cpu::Staging st;
  cpu::accumulate(st.out(y, n), st.in(x, n), n);
}

void CpuBackend::scale(float* x, float s, int64_t n) { cpu::scale(x, s, n); }
double CpuBackend::sum_squares(const float* x, int64_t n) { return cpu::sum_squares(x, n); }
bool CpuBackend::all_finite(const float* x, int64_t n) { return cpu::all_finite(x, n); }

// ---------------------------------------------------------------------------- layer kernels

void CpuBackend::embedding_forward(DevPtr out, const int32_t* tokens, ConstDevPtr wte,
                                   ConstDevPtr wpe, int64_t N, int64_t T, int64_t C) {
  cpu::Staging st;
  int64_t rows = 0;  // the token table's rows the tokens reach
  for (int64_t i = 0; i < N; ++i) rows = std::max<int64_t>(rows, tokens[i] + 1);
  cpu::embedding_forward(st.out(out, N * C), tokens, st.in(wte, rows * C),
                         wpe.ptr ? st.in(wpe, std::min(N, T) * C) : nullptr, N, T, C);
}

void CpuBackend::embedding_backward(float* dwte, float* dwpe, ConstDevPtr dout,
                                    const int32_t* tokens, int64_t N, int64_t T, int64_t C) {
  cpu::Staging st;
  cpu::embedding_backward(dwte, dwpe, st.in(dout, N * C), tokens, N, T, C);
}

void CpuBackend::layernorm_forward(DevPtr out, float* mean, float* rstd, ConstDevPtr x,
                                   ConstDevPtr w, ConstDevPtr b, int64_t N, int64_t C,
                                   float eps) {
  cpu::Staging st;
  cpu::layernorm_forward(st.out(out, N * C), mean, rstd, st.in(x, N * C), st.in(w, C),
                         st.in(b, C), N, C, eps);
}

void CpuBackend::layernorm_backward(DevPtr dx, float* dw, float* db, ConstDevPtr dout,
                                    ConstDevPtr x, ConstDevPtr w, const float* mean,
                                    const float* rstd, int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::layernorm_backward(threads_, st.out(dx, N * C), dw, db, st.in(dout, N * C),
                          st.in(x, N * C), st.in(w, C), mean, rstd, N, C);
}

void CpuBackend::layernorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x,
                                          ConstDevPtr w, const float* mean, const float* rstd,
                                          int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::layernorm_backward_input(st.out(dx, N * C), st.in(dout, N * C), st.in(x, N * C),
                                st.in(w, C), mean, rstd, N, C);
}

void CpuBackend::layernorm_backward_weight(float* dw, float* db, ConstDevPtr dout, ConstDevPtr x,
                                           const float* mean, const float* rstd, int64_t N,
                                           int64_t C) {
  cpu::Staging st;
  cpu::layernorm_backward_weight(threads_, dw, db, st.in(dout, N * C), st.in(x, N * C), mean,
                                 rstd, N, C);
}

void CpuBackend::rmsnorm_forward(DevPtr out, float* rstd, ConstDevPtr x, ConstDevPtr w, int64_t N,
                                 int64_t C, float eps) {
  cpu::Staging st;
  cpu::rmsnorm_forward(st.out(out, N * C), rstd, st.in(x, N * C), st.in(w, C), N, C, eps);
}

void CpuBackend::rmsnorm_backward_input(DevPtr dx, ConstDevPtr dout, ConstDevPtr x, ConstDevPtr w,
                                        const float* rstd, int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::rmsnorm_backward_input(st.out(dx, N * C), st.in(dout, N * C), st.in(x, N * C),
                              st.in(w, C), rstd, N, C);
}

void CpuBackend::rmsnorm_backward_weight(float* dw, ConstDevPtr dout, ConstDevPtr x,
                                         const float* rstd, int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::rmsnorm_backward_weight(threads_, dw, st.in(dout, N * C), st.in(x, N * C), rstd, N, C);
}

void CpuBackend::rope(DevPtr x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D,
                      float theta, bool inverse) {
  cpu::Staging st;
  cpu::rope(st.out(x, extent(N, heads * D, ld)), N, T, ld, heads, D, theta, inverse);
}

void CpuBackend::swiglu_forward(DevPtr out, ConstDevPtr in, int64_t N, int64_t F) {
  cpu::Staging st;
  cpu::swiglu_forward(st.out(out, N * F), st.in(in, N * 2 * F), N, F);
}

void CpuBackend::swiglu_backward(DevPtr din, ConstDevPtr in, ConstDevPtr dout, int64_t N,
                                 int64_t F) {
  cpu::Staging st;
  cpu::swiglu_backward(st.out(din, N * 2 * F), st.in(in, N * 2 * F), st.in(dout, N * F), N, F);
}

void CpuBackend::add_bias(DevPtr out, ConstDevPtr b, int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::add_bias(st.out(out, N * C), st.in(b, C), N, C);
}

void CpuBackend::bias_backward(float* db, ConstDevPtr dout, int64_t N, int64_t C) {
  cpu::Staging st;
  cpu::bias_backward(threads_, db, st.in(dout, N * C), N, C);
}

void CpuBackend::gelu_forward(DevPtr out, ConstDevPtr x, int64_t n) {
  cpu::Staging st;
  cpu::gelu_forward(st.out(out, n), st.in(x, n), n);
}

void CpuBackend::gelu_backward(DevPtr dx, ConstDevPtr x, ConstDevPtr dout, int64_t n) {
  cpu::Staging st;
  cpu::gelu_backward(st.out(dx, n), st.in(x, n), st.in(dout, n), n);
}

void CpuBackend::causal_softmax_forward(DevPtr p, ConstDevPtr s, int64_t rows, int64_t T,
                                        float scale) {
  cpu::Staging st;
  const int64_t n = rows * T * T;
  cpu::causal_softmax_forward(st.out(p, n), st.in(s, n), rows, T, scale);
}

void CpuBackend::causal_softmax_backward(DevPtr ds, ConstDevPtr p, ConstDevPtr dp, int64_t rows,
                                         int64_t T, float scale) {
  cpu::Staging st;
  const int64_t n = rows * T * T;
  cpu::causal_softmax_backward(st.out(ds, n), st.in(p, n), st.in(dp, n), rows, T, scale);
}

void CpuBackend::linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                                int64_t n_in, int64_t n_out, float beta, DevPtr gelu_out) {
  if (x.dtype == DType::bf16 && w.dtype == DType::bf16) {
    cpu::MatmulDesc d;
    d.tb = true, d.M = N, d.N = n_out, d.K = n_in, d.lda = n_in, d.ldb = n_in, d.ldc = n_out;
    d.beta = beta, d.bias = b.ptr != nullptr, d.bias_dtype = b.dtype;
    if (!gelu_out.ptr) {  // y = x w^T + b + beta y in fp32, rounded once to y's dtype
      d.c = y.dtype;
      if (onednn_->run(d, x.ptr, w.ptr, y.ptr, b.ptr)) return;
    } else {  // the fp32 pre-activation, then y and gelu(y) each rounded once from it
      NUPIPE_CHECK(beta == 0.0f, "linear_forward with gelu_out needs beta = 0");
      std::vector<float> y32(static_cast<size_t>(N * n_out));
      d.c = DType::f32;
      if (onednn_->run(d, x.ptr, w.ptr, y32.data(), b.ptr)) {
        cpu::Staging st;
        convert(y, f32_ptr(y32.data()), N * n_out);
        cpu::gelu_forward(st.out(gelu_out, N * n_out), y32.data(), N * n_out);
        return;
      }
    }
    if (n_in > 0) note_refusal("linear_forward", N, n_out, n_in);
  }
  cpu::Staging st;
  float* y32 = st.out(y, N * n_out);
  cpu::gemm(false, true, N, n_out, n_in, 1.0f, st.in(x, N * n_in), n_in, st.in(w, n_out * n_in),
            n_in, beta, y32, n_out);
  cpu::add_bias(y32, st.in(b, n_out), N, n_out);
  if (gelu_out.ptr) cpu::gelu_forward(st.out(gelu_out, N * n_out), y32, N * n_out);
}

void CpuBackend::attention_forward(DevPtr out, float* lse, ConstDevPtr qkv, int64_t B, int64_t T,
                                   int64_t H, int64_t Hkv, int64_t D, float scale) {
  cpu::attention_forward(*this, out, lse, qkv, B, T, H, Hkv, D, scale);
}

void CpuBackend::attention_backward(DevPtr dqkv, float* delta, ConstDevPtr dout, ConstDevPtr qkv,
                                    ConstDevPtr out, const float* lse, int64_t B, int64_t T,
                                    int64_t H, int64_t Hkv, int64_t D, float scale) {
  cpu::attention_backward(*this, dqkv, delta, dout, qkv, out, lse, B, T, H, Hkv, D, scale);
}

double CpuBackend::cross_entropy_forward_backward(float* dlogits, const float* logits,
                                                  const int32_t* targets, int64_t N, int64_t V,
                                                  float dloss) {
  return cpu::cross_entropy_forward_backward(dlogits, logits, targets, N, V, dloss);
}

double CpuBackend::cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                                         int64_t V) {
  return cpu::cross_entropy_forward(logits, targets, N, V);
}

void CpuBackend::adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float c1,
                       float c2) {
  cpu::adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2);
}

}  // namespace nupipe::runtime
