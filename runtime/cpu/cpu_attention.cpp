// cpu_attention.cpp: fused causal attention on the cpu. One (sequence, head) pair per OpenMP
// iteration; its query rows go in blocks of kBlock, and a block's scores against the keys it
// can see (0 .. its last row) live in a thread-local [kBlock, T] scratch, never a [T,T] matrix
// per head. The products are sgemm calls (single-threaded inside the parallel loop) and the
// softmax is the unfused kernel's (max, exp, double row sum), so the two paths agree to fp32
// summation order.
// Backward recomputes each block's probabilities from the saved log-sum-exp
// (FlashAttention-2's dS = P * (dP - rowsum(dO * O))) and accumulates dk, dv block after block
// in a fixed order, so results do not depend on the thread count.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/cpu/cpu_kernels.h"

namespace nupipe::runtime::cpu {

namespace {

constexpr int64_t kBlock = 64;  // query rows per block

// C[M,N] (ldc) = alpha op(A) op(B) + beta C, row-major.
void mm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t H,
                       int64_t D, float scale) {
  const int64_t C = H * D, C3 = 3 * C;
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(kBlock * T));
#pragma omp for
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* q = qkv + b * T * C3 + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, T - i0), keys = i0 + rows;  // keys 0..last row
        // s = q_blk k^T (unscaled, as the unfused GEMM), then the causal softmax per row.
        mm(false, true, rows, keys, D, 1.0f, q + i0 * C3, C3, k, C3, 0.0f, s.data(), keys);
        for (int64_t r = 0; r < rows; ++r) {
          float* si = s.data() + r * keys;
          lse[bh * T + i0 + r] = softmax_row(si, si, i0 + r + 1, keys, scale);
        }
        // out_blk = p v
        mm(false, false, rows, D, keys, 1.0f, s.data(), keys, v, C3, 0.0f,
           out + (b * T + i0) * C + h * D, C);
      }
    }
  }
}

void attention_backward(float* dqkv, float* delta, const float* dout, const float* qkv,
                        const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                        int64_t D, float scale) {
  const int64_t C = H * D, C3 = 3 * C;
#pragma omp parallel
  {
    std::vector<float> p(static_cast<size_t>(kBlock * T)), dp(static_cast<size_t>(kBlock * T));
#pragma omp for
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* q = qkv + b * T * C3 + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      const float* g = dout + b * T * C + h * D;
      const float* o = out + b * T * C + h * D;
      float* dq = dqkv + b * T * C3 + h * D;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      for (int64_t i = 0; i < T; ++i) {
        double acc = 0.0;
        for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(g[i * C + d]) * o[i * C + d];
        delta[bh * T + i] = static_cast<float>(acc);
        std::fill(dk + i * C3, dk + i * C3 + D, 0.0f);  // summed into over the blocks below
        std::fill(dv + i * C3, dv + i * C3 + D, 0.0f);
      }
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, T - i0), keys = i0 + rows;
        // p from the saved lse; dp = dO_blk v^T; then ds = scale p (dp - delta) into dp.
        mm(false, true, rows, keys, D, 1.0f, q + i0 * C3, C3, k, C3, 0.0f, p.data(), keys);
        mm(false, true, rows, keys, D, 1.0f, g + i0 * C, C, v, C3, 0.0f, dp.data(), keys);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          float* pi = p.data() + r * keys;
          float* di = dp.data() + r * keys;
          const float m = lse[bh * T + i], dl = delta[bh * T + i];
          for (int64_t j = 0; j <= i; ++j) {
            pi[j] = std::exp(scale * pi[j] - m);
            di[j] = scale * pi[j] * (di[j] - dl);
          }
          std::fill(pi + i + 1, pi + keys, 0.0f);
          std::fill(di + i + 1, di + keys, 0.0f);
        }
        // dq_blk = ds k ; dk += ds^T q_blk ; dv += p^T dO_blk
        mm(false, false, rows, D, keys, 1.0f, dp.data(), keys, k, C3, 0.0f, dq + i0 * C3, C3);
        mm(true, false, keys, D, rows, 1.0f, dp.data(), keys, q + i0 * C3, C3, 1.0f, dk, C3);
        mm(true, false, keys, D, rows, 1.0f, p.data(), keys, g + i0 * C, C, 1.0f, dv, C3);
      }
    }
  }
}

}  // namespace nupipe::runtime::cpu
