// cpu_attention.cpp: fused causal attention on the cpu. One (sequence, head) pair per OpenMP
// iteration; its query rows go in blocks of kBlock, and a block's scores against the keys it
// can see (0 .. its last row) live in a thread-local [kBlock, T] fp32 scratch, never a [T,T]
// matrix per head. The block products are the backend's GEMMs (CpuBackend::gemm, one thread
// each inside the parallel loop): the score products q k^T and dO v^T read q, k, v and dO in
// their stored dtype (bf16 x bf16 runs oneDNN's bf16 kernels with fp32 accumulation); the
// products with the fp32 probabilities (p v, ds k, ds^T q, p^T dO) read a head's bf16
// operands widened to fp32, so the probabilities are never rounded to bf16, and bf16 outputs
// are rounded once, from fp32 per-head buffers. In fp32 every product is the sgemm call it
// always was. The softmax is the unfused kernel's (max, exp, double row sum), so the two paths
// agree to fp32 summation order.
// Backward recomputes each block's probabilities from the saved log-sum-exp
// (FlashAttention-2's dS = P * (dP - rowsum(dO * O))) and accumulates dk, dv block after block
// in a fixed order, so results do not depend on the thread count. Grouped-query attention:
// query head h reads key/value head h / (H / Hkv) in place (no repeated copy); backward runs
// one (sequence, key/value head) pair per iteration, its query heads one after the other, so
// dk, dv sum them in a fixed order too.
#include "runtime/cpu/cpu_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/cpu_kernels.h"

namespace nupipe::runtime::cpu {

namespace {

constexpr int64_t kBlock = 64;  // query rows per block

float load(ConstDevPtr p, int64_t i) {
  return p.dtype == DType::bf16 ? f32_from_bf16(static_cast<const uint16_t*>(p.ptr)[i])
                                : static_cast<const float*>(p.ptr)[i];
}

// A head's [T, D] block (row stride ld) read as fp32: in place when f32, else widened into
// buf (row stride D).
struct View {
  float* p;
  int64_t ld;
};
View as_f32(ConstDevPtr m, int64_t ld, int64_t T, int64_t D, std::vector<float>& buf) {
  if (m.dtype == DType::f32) return {const_cast<float*>(static_cast<const float*>(m.ptr)), ld};
  buf.resize(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t d = 0; d < D; ++d) buf[t * D + d] = load(m, t * ld + d);
  }
  return {buf.data(), D};
}
// An output head block: written in place when f32, else into buf and rounded back by store().
View out_f32(DevPtr m, int64_t ld, int64_t T, int64_t D, std::vector<float>& buf) {
  if (m.dtype == DType::f32) return {static_cast<float*>(m.ptr), ld};
  buf.resize(static_cast<size_t>(T * D));
  return {buf.data(), D};
}
void store(DevPtr m, int64_t ld, int64_t T, int64_t D, const View& v) {
  if (m.dtype == DType::f32) return;
  uint16_t* o = static_cast<uint16_t*>(m.ptr);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t d = 0; d < D; ++d) o[t * ld + d] = bf16_from_f32(v.p[t * v.ld + d]);
  }
}

}  // namespace

void attention_forward(CpuBackend& be, DevPtr out, float* lse, ConstDevPtr qkv, int64_t B,
                       int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale) {
  const int64_t C = H * D, C3 = (H + 2 * Hkv) * D, group = H / Hkv;
#pragma omp parallel num_threads(be.threads())
  {
    omp_set_num_threads(1);  // this thread's products run on it alone
    std::vector<float> s(static_cast<size_t>(kBlock * T)), vbuf, obuf;
#pragma omp for
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const ConstDevPtr q = qkv + (b * T * C3 + h * D);
      const ConstDevPtr k = qkv + (b * T * C3 + C + (h / group) * D), v = k + Hkv * D;
      const View vf = as_f32(v, C3, T, D, vbuf);
      const DevPtr o = out + (b * T * C + h * D);
      const View of = out_f32(o, C, T, D, obuf);
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, T - i0), keys = i0 + rows;  // keys 0..last row
        // s = q_blk k^T (unscaled, as the unfused GEMM), then the causal softmax per row.
        be.gemm(false, true, rows, keys, D, 1.0f, q + i0 * C3, C3, k, C3, 0.0f,
                f32_ptr(s.data()), keys);
        for (int64_t r = 0; r < rows; ++r) {
          float* si = s.data() + r * keys;
          lse[bh * T + i0 + r] = softmax_row(si, si, i0 + r + 1, keys, scale);
        }
        // out_blk = p v
        be.gemm(false, false, rows, D, keys, 1.0f, f32_ptr(s.data()), keys, f32_ptr(vf.p), vf.ld,
                0.0f, f32_ptr(of.p + i0 * of.ld), of.ld);
      }
      store(o, C, T, D, of);
    }
  }
}

void attention_backward(CpuBackend& be, DevPtr dqkv, float* delta, ConstDevPtr dout,
                        ConstDevPtr qkv, ConstDevPtr out, const float* lse, int64_t B, int64_t T,
                        int64_t H, int64_t Hkv, int64_t D, float scale) {
  const int64_t C = H * D, C3 = (H + 2 * Hkv) * D, group = H / Hkv;
#pragma omp parallel num_threads(be.threads())
  {
    omp_set_num_threads(1);
    std::vector<float> p(static_cast<size_t>(kBlock * T)), dp(static_cast<size_t>(kBlock * T));
    std::vector<float> qbuf, kbuf, gbuf, dqbuf, dkbuf, dvbuf;
#pragma omp for
    for (int64_t bk = 0; bk < B * Hkv; ++bk) {
      const int64_t b = bk / Hkv, kh = bk % Hkv;
      const ConstDevPtr k = qkv + (b * T * C3 + C + kh * D), v = k + Hkv * D;
      const DevPtr dk = dqkv + (b * T * C3 + C + kh * D), dv = dk + Hkv * D;
      const View kf = as_f32(k, C3, T, D, kbuf);
      const View dkf = out_f32(dk, C3, T, D, dkbuf), dvf = out_f32(dv, C3, T, D, dvbuf);
      for (int64_t i = 0; i < T; ++i) {  // summed into below, over the group's query heads
        std::fill(dkf.p + i * dkf.ld, dkf.p + i * dkf.ld + D, 0.0f);
        std::fill(dvf.p + i * dvf.ld, dvf.p + i * dvf.ld + D, 0.0f);
      }
      for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
        const int64_t bh = b * H + h;
        const ConstDevPtr q = qkv + (b * T * C3 + h * D);
        const ConstDevPtr g = dout + (b * T * C + h * D), o = out + (b * T * C + h * D);
        const DevPtr dq = dqkv + (b * T * C3 + h * D);
        const View qf = as_f32(q, C3, T, D, qbuf), gf = as_f32(g, C, T, D, gbuf);
        const View dqf = out_f32(dq, C3, T, D, dqbuf);
        for (int64_t i = 0; i < T; ++i) {
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d) {
            acc += static_cast<double>(load(g, i * C + d)) * load(o, i * C + d);
          }
          delta[bh * T + i] = static_cast<float>(acc);
        }
        for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
          const int64_t rows = std::min(kBlock, T - i0), keys = i0 + rows;
          // p from the saved lse; dp = dO_blk v^T; then ds = scale p (dp - delta) into dp.
          be.gemm(false, true, rows, keys, D, 1.0f, q + i0 * C3, C3, k, C3, 0.0f,
                  f32_ptr(p.data()), keys);
          be.gemm(false, true, rows, keys, D, 1.0f, g + i0 * C, C, v, C3, 0.0f,
                  f32_ptr(dp.data()), keys);
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
          be.gemm(false, false, rows, D, keys, 1.0f, f32_ptr(dp.data()), keys, f32_ptr(kf.p),
                  kf.ld, 0.0f, f32_ptr(dqf.p + i0 * dqf.ld), dqf.ld);
          be.gemm(true, false, keys, D, rows, 1.0f, f32_ptr(dp.data()), keys,
                  f32_ptr(qf.p + i0 * qf.ld), qf.ld, 1.0f, f32_ptr(dkf.p), dkf.ld);
          be.gemm(true, false, keys, D, rows, 1.0f, f32_ptr(p.data()), keys,
                  f32_ptr(gf.p + i0 * gf.ld), gf.ld, 1.0f, f32_ptr(dvf.p), dvf.ld);
        }
        store(dq, C3, T, D, dqf);
      }
      store(dk, C3, T, D, dkf);
      store(dv, C3, T, D, dvf);
    }
  }
}

}  // namespace nupipe::runtime::cpu
