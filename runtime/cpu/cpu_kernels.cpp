// cpu_kernels.cpp: the fp32 reference kernels (OpenMP loops, OpenBLAS sgemm). Reductions
// accumulate in double where rounding would otherwise depend on the row length.
#include "runtime/cpu/cpu_kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace nupipe::runtime::cpu {

namespace {
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
}  // namespace

// ---------------------------------------------------------------------------------- BLAS

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(int threads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, int64_t sa, const float* B,
                              int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
                              int64_t sc, int64_t batch) {
  // Many small products: one sgemm per OpenMP thread beats one threaded sgemm at a time.
  // (OpenBLAS is the OpenMP build: inside a parallel region it runs single-threaded.)
  if (batch >= threads && threads > 1) {
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < batch; ++i) {
      gemm(ta, tb, M, N, K, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
    }
  } else {
    for (int64_t i = 0; i < batch; ++i) {
      gemm(ta, tb, M, N, K, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
    }
  }
}

// ------------------------------------------------------------------- elementwise, reductions

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void accumulate(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale(float* x, float s, int64_t n) {
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

// In a fixed order whatever the thread count: kParts contiguous parts, each summed in kLanes
// interleaved double lanes (element i of a part in lane i % kLanes, by fma, which vectorises),
// the lanes added pairwise, then the parts in order. The same bits on 1 thread or 64.
double sum_squares(const float* x, int64_t n) {
  constexpr int kParts = 64, kLanes = 8;
  static_assert(kLanes == 8, "the lanes are added pairwise below");
  double part[kParts];
#pragma omp parallel for schedule(static)
  for (int b = 0; b < kParts; ++b) {
    const int64_t begin = n * b / kParts, end = n * (b + 1) / kParts;
    double lane[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) {
        const double v = x[i + j];
        lane[j] = std::fma(v, v, lane[j]);
      }
    }
    for (int j = 0; i < end; ++i, ++j) {
      const double v = x[i];
      lane[j] = std::fma(v, v, lane[j]);
    }
    const double low = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    const double high = (lane[4] + lane[5]) + (lane[6] + lane[7]);
    part[b] = low + high;
  }
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}

bool all_finite(const float* x, int64_t n) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad == 0;
}

// ------------------------------------------------------------------------------- embedding

void embedding_forward(float* out, const int32_t* tokens, const float* wte,
                                   const float* wpe, int64_t N, int64_t T, int64_t C) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* e = wte + static_cast<int64_t>(tokens[i]) * C;
    float* o = out + i * C;
    if (!wpe) {  // no position table (llama)
      for (int64_t c = 0; c < C; ++c) o[c] = e[c];
      continue;
    }
    const float* p = wpe + (i % T) * C;
    for (int64_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
  }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout,
                                    const int32_t* tokens, int64_t N, int64_t T, int64_t C) {
  // Token rows may repeat, so dwte is scattered serially over rows, in parallel over columns.
#pragma omp parallel for
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t c1 = std::min(C, c0 + 16);
    for (int64_t i = 0; i < N; ++i) {
      float* d = dwte + static_cast<int64_t>(tokens[i]) * C;
      const float* g = dout + i * C;
      for (int64_t c = c0; c < c1; ++c) d[c] += g[c];
    }
  }
  if (!dwpe) return;  // no position table (llama)
#pragma omp parallel for
  for (int64_t t = 0; t < T; ++t) {
    float* d = dwpe + t * C;
    for (int64_t i = t; i < N; i += T) {
      const float* g = dout + i * C;
      for (int64_t c = 0; c < C; ++c) d[c] += g[c];
    }
  }
}

// ------------------------------------------------------------------------------- layernorm

void layernorm_forward(float* out, float* mean, float* rstd, const float* x,
                                   const float* w, const float* b, int64_t N, int64_t C,
                                   float eps) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    double m = 0.0;
    for (int64_t c = 0; c < C; ++c) m += xi[c];
    m /= C;
    double var = 0.0;
    for (int64_t c = 0; c < C; ++c) var += (xi[c] - m) * (xi[c] - m);
    var /= C;
    const float s = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float mf = static_cast<float>(m);
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = (xi[c] - mf) * s * w[c] + b[c];
    mean[i] = mf;
    rstd[i] = s;
  }
}

// Column sums over rows (for weight/bias gradients): per-thread partials, then combined.
template <typename RowFn>
static void column_reduce(int64_t N, int64_t C, int nthreads, float* acc_a, float* acc_b,
                          RowFn row_fn) {
  std::vector<double> partial(static_cast<size_t>(nthreads) * 2 * C, 0.0);
#pragma omp parallel num_threads(nthreads)
  {
    double* pa = partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C;
    double* pb = pa + C;
#pragma omp for
    for (int64_t i = 0; i < N; ++i) row_fn(i, pa, pb);
  }
  for (int t = 0; t < nthreads; ++t) {
    const double* pa = partial.data() + static_cast<size_t>(t) * 2 * C;
    for (int64_t c = 0; c < C; ++c) {
      if (acc_a) acc_a[c] += static_cast<float>(pa[c]);
      if (acc_b) acc_b[c] += static_cast<float>(pa[C + c]);
    }
  }
}

// LayerNorm's backward in its two parts. The fused kernel is the weight part, then the input
// part, so a backward split into the two gives it bit for bit.
void layernorm_backward_weight(int threads, float* dw, float* db, const float* dout,
                               const float* x, const float* mean, const float* rstd, int64_t N,
                               int64_t C) {
  column_reduce(N, C, threads, dw, db, [&](int64_t i, double* pdw, double* pdb) {
    const float* xi = x + i * C;
    const float* gi = dout + i * C;
    const float m = mean[i], s = rstd[i];
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (xi[c] - m) * s;
      pdw[c] += static_cast<double>(gi[c]) * xhat;
      pdb[c] += gi[c];
    }
  });
}

void layernorm_backward_input(float* dx, const float* dout, const float* x, const float* w,
                              const float* mean, const float* rstd, int64_t N, int64_t C) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    const float* gi = dout + i * C;
    const float m = mean[i], s = rstd[i];
    double sum_g = 0.0, sum_gx = 0.0;  // mean(dxhat), mean(dxhat * xhat)
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (xi[c] - m) * s;
      const float g = gi[c] * w[c];
      sum_g += g;
      sum_gx += static_cast<double>(g) * xhat;
    }
    const float mg = static_cast<float>(sum_g / C), mgx = static_cast<float>(sum_gx / C);
    float* dxi = dx + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (xi[c] - m) * s;
      dxi[c] = s * (gi[c] * w[c] - mg - xhat * mgx);
    }
  }
}

void layernorm_backward(int threads, float* dx, float* dw, float* db, const float* dout,
                        const float* x, const float* w, const float* mean, const float* rstd,
                        int64_t N, int64_t C) {
  // dw, db first: they read dout, which dx may overwrite.
  layernorm_backward_weight(threads, dw, db, dout, x, mean, rstd, N, C);
  layernorm_backward_input(dx, dout, x, w, mean, rstd, N, C);
}

// -------------------------------------------------------------------------------- RMSNorm

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N,
                     int64_t C, float eps) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xi[c]) * xi[c];
    const float s = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = xi[c] * s * w[c];
    rstd[i] = s;
  }
}

// y = x s w with s = (mean(x^2) + eps)^-1/2: dx = s (w g - x s^2 mean(w g x)).
void rmsnorm_backward_input(float* dx, const float* dout, const float* x, const float* w,
                            const float* rstd, int64_t N, int64_t C) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    const float* gi = dout + i * C;
    const float s = rstd[i];
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(gi[c]) * w[c] * xi[c];
    const float k = static_cast<float>(sum / C) * s * s;
    float* dxi = dx + i * C;
    for (int64_t c = 0; c < C; ++c) dxi[c] = s * (gi[c] * w[c] - xi[c] * k);
  }
}

void rmsnorm_backward_weight(int threads, float* dw, const float* dout, const float* x,
                             const float* rstd, int64_t N, int64_t C) {
  column_reduce(N, C, threads, dw, nullptr, [&](int64_t i, double* pdw, double*) {
    const float* xi = x + i * C;
    const float* gi = dout + i * C;
    const float s = rstd[i];
    for (int64_t c = 0; c < C; ++c) pdw[c] += static_cast<double>(gi[c]) * (xi[c] * s);
  });
}

// ------------------------------------------------------------------------ rotary, SwiGLU

// Hugging Face Llama's rotate-half convention: dimension d < D/2 pairs with d + D/2, at angle
// pos * theta^(-2d/D) (computed in double). inverse rotates by minus the angle (the
// transpose: the backward of the rotation).
void rope(float* x, int64_t N, int64_t T, int64_t ld, int64_t heads, int64_t D, float theta,
          bool inverse) {
  const int64_t half = D / 2;
  const int64_t positions = std::min(N, T);
  std::vector<float> cs(static_cast<size_t>(positions * half)),
      sn(static_cast<size_t>(positions * half));
  for (int64_t t = 0; t < positions; ++t) {
    for (int64_t d = 0; d < half; ++d) {
      const double a = static_cast<double>(t) *
                       std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(d) / D);
      cs[t * half + d] = static_cast<float>(std::cos(a));
      sn[t * half + d] = static_cast<float>(inverse ? -std::sin(a) : std::sin(a));
    }
  }
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* c = cs.data() + (i % T) * half;
    const float* s = sn.data() + (i % T) * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + i * ld + h * D;
      for (int64_t d = 0; d < half; ++d) {
        const float a = v[d], b = v[d + half];
        v[d] = a * c[d] - b * s[d];
        v[d + half] = b * c[d] + a * s[d];
      }
    }
  }
}

void swiglu_forward(float* out, const float* in, int64_t N, int64_t F) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* g = in + i * 2 * F;
    const float* u = g + F;
    float* o = out + i * F;
    for (int64_t f = 0; f < F; ++f) o[f] = g[f] / (1.0f + std::exp(-g[f])) * u[f];
  }
}

// d gate = dout u sig(g) (1 + g (1 - sig(g))), d up = dout silu(g).
void swiglu_backward(float* din, const float* in, const float* dout, int64_t N, int64_t F) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    const float* g = in + i * 2 * F;
    const float* u = g + F;
    const float* go = dout + i * F;
    float* dg = din + i * 2 * F;
    float* du = dg + F;
    for (int64_t f = 0; f < F; ++f) {
      const float sig = 1.0f / (1.0f + std::exp(-g[f]));
      const float gf = g[f], uf = u[f];  // din may alias in
      dg[f] = go[f] * uf * sig * (1.0f + gf * (1.0f - sig));
      du[f] = go[f] * gf * sig;
    }
  }
}

// ---------------------------------------------------------------------------- bias, GELU

void add_bias(float* out, const float* b, int64_t N, int64_t C) {
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] += b[c];
  }
}

void bias_backward(int threads, float* db, const float* dout, int64_t N, int64_t C) {
  column_reduce(N, C, threads, db, nullptr, [&](int64_t i, double* pdb, double*) {
    const float* g = dout + i * C;
    for (int64_t c = 0; c < C; ++c) pdb[c] += g[c];
  });
}

void gelu_forward(float* out, const float* x, int64_t n) {
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = 0.5f * v * (1.0f + std::tanh(kGeluC * (v + 0.044715f * v * v * v)));
  }
}

void gelu_backward(float* dx, const float* x, const float* dout, int64_t n) {
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = kGeluC * (v + 0.044715f * v * v * v);
    const float t = std::tanh(u);
    const float du = kGeluC * (1.0f + 3.0f * 0.044715f * v * v);
    dx[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  }
}

// ------------------------------------------------------------------------------ attention

float softmax_row(float* p, const float* s, int64_t n, int64_t len, float scale) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, scale * s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(scale * s[j] - mx);
    sum += p[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
  for (int64_t j = n; j < len; ++j) p[j] = 0.0f;
  return mx + static_cast<float>(std::log(sum));
}

void causal_softmax_forward(float* p, const float* s, int64_t rows, int64_t T,
                                        float scale) {
#pragma omp parallel for
  for (int64_t r = 0; r < rows * T; ++r) {
    const int64_t i = r % T;  // query position: keys 0..i are visible
    softmax_row(p + r * T, s + r * T, i + 1, T, scale);
  }
}

void causal_softmax_backward(float* ds, const float* p, const float* dp,
                                         int64_t rows, int64_t T, float scale) {
#pragma omp parallel for
  for (int64_t r = 0; r < rows * T; ++r) {
    const int64_t i = r % T;
    const float* pi = p + r * T;
    const float* gi = dp + r * T;
    double dot = 0.0;
    for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(pi[j]) * gi[j];
    const float d = static_cast<float>(dot);
    float* o = ds + r * T;
    for (int64_t j = 0; j <= i; ++j) o[j] = scale * pi[j] * (gi[j] - d);
    for (int64_t j = i + 1; j < T; ++j) o[j] = 0.0f;
  }
}

// --------------------------------------------------------------------------- cross-entropy

double cross_entropy_forward_backward(float* dlogits, const float* logits,
                                                  const int32_t* targets, int64_t N, int64_t V,
                                                  float dloss) {
  double total = 0.0;
#pragma omp parallel for reduction(+ : total)
  for (int64_t i = 0; i < N; ++i) {
    const float* l = logits + i * V;
    float* d = dlogits + i * V;
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, l[v]);
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
    const double lse = mx + std::log(sum);
    const int64_t t = targets[i];
    total += lse - l[t];
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t v = 0; v < V; ++v) d[v] = std::exp(l[v] - mx) * inv * dloss;
    d[t] -= dloss;
  }
  return total;
}

double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N,
                                         int64_t V) {
  double total = 0.0;
#pragma omp parallel for reduction(+ : total)
  for (int64_t i = 0; i < N; ++i) {
    const float* l = logits + i * V;
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, l[v]);
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
    total += mx + std::log(sum) - l[targets[i]];
  }
  return total;
}

// ------------------------------------------------------------------------------- optimizer

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float c1,
                       float c2) {
  const float step = lr / c1;
  const float inv_sqrt_c2 = 1.0f / std::sqrt(c2);
  const float decay = 1.0f - lr * weight_decay;
  // Every multiply-add is an explicit fma and nothing else can contract, so the vectorised
  // body and its scalar remainder round alike: an element's update does not depend on where
  // its shard (ZeRO-1, a stage's tensor piece) starts.
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float mi = std::fma(beta1, m[i], (1.0f - beta1) * g);
    const float vi = std::fma(beta2, v[i], ((1.0f - beta2) * g) * g);
    const float update = (step * mi) / std::fma(std::sqrt(vi), inv_sqrt_c2, eps);
    m[i] = mi;
    v[i] = vi;
    param[i] = std::fma(param[i], decay, -update);
  }
}

}  // namespace nupipe::runtime::cpu
