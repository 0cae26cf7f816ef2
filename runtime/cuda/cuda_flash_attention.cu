// cuda_flash_attention.cu: fused causal attention (flash-style: the [T,T] scores never reach
// memory), fp32 on CUDA cores, with the cpu kernel's arithmetic (runtime/cpu/cpu_attention.cpp).
// One thread owns one query row (forward, dq) or one key row (dk, dv) of one (sequence, head)
// and keeps it in registers; the rows it meets stream through shared memory in tiles of
// kTile(D) rows, widened to fp32 once per tile.
//   forward   online softmax over key tiles (running max, rescaled sum and output); lse saved.
//   backward  delta = rowsum(dO * O); then dq by query rows and dk, dv by key rows, each a
//             sum over the other index in ascending order, with P recomputed from lse. Two
//             kernels instead of atomics: every gradient is summed in one fixed order, so the
//             result is deterministic (FlashAttention-2's atomics on dq are not).
// Grouped-query attention: query head h reads key/value head h / (H / Hkv) in place; the dk, dv
// kernel runs one thread per key row of a key/value head and sums its query heads in order.
// Head dims 16, 32, 64 and 128 are instantiated; others are refused by the launchers.
#include <climits>
#include <string>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kRows = 64;  // threads per block: query (or key) rows per block

// Rows per shared tile: 16 KiB of fp32 per operand whatever D.
template <int D>
constexpr int kTile = 4096 / D;

__host__ __device__ __forceinline__ int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

struct Dims {
  int64_t T, H, C;  // sequence length, query heads, H * D
  float scale;
  int64_t Hkv, W;   // key/value heads; the qkv row width (H + 2 Hkv) D
};

// Row r (of sequence b) of operand `part` (0 q, 1 k, 2 v) of head h (a query head for q, a
// key/value head for k and v): its first element.
__device__ __forceinline__ int64_t qkv_at(const Dims& d, int64_t b, int64_t r, int part,
                                          int64_t h, int D) {
  return (b * d.T + r) * d.W + (part == 0 ? 0 : d.C + (part - 1) * d.Hkv * D) + h * D;
}
__device__ __forceinline__ int64_t row_at(const Dims& d, int64_t b, int64_t r, int64_t h, int D) {
  return (b * d.T + r) * d.C + h * D;
}

// Rows [first, first + n) of a [., D] operand into shared memory (n <= tile), by the block.
template <int D>
__device__ __forceinline__ void load_tile(float (*dst)[D], In src, int64_t first_elem,
                                          int64_t row_stride, int n) {
  for (int e = threadIdx.x; e < n * D; e += blockDim.x) {
    const int r = e / D, c = e % D;
    dst[r][c] = load(src, first_elem + r * row_stride + c);
  }
}

template <int D>
__global__ void attention_forward_kernel(Out out, float* lse, In qkv, Dims d) {
  constexpr int TK = kTile<D>;
  __shared__ float ks[TK][D], vs[TK][D];
  const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, kvh = h / (d.H / d.Hkv);
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kRows, i = i0 + threadIdx.x;
  const bool active = i < d.T;
  float q[D], acc[D];
  float mx = -INFINITY, sum = 0.0f;
  if (active) {
    for (int c = 0; c < D; ++c) q[c] = load(qkv, qkv_at(d, b, i, 0, h, D) + c);
  }
  for (int c = 0; c < D; ++c) acc[c] = 0.0f;
  const int64_t last = lmin(d.T, i0 + kRows) - 1;  // the block's last query sees keys 0..last
  for (int64_t j0 = 0; j0 <= last; j0 += TK) {
    const int n = static_cast<int>(lmin(TK, last + 1 - j0));
    __syncthreads();  // the previous tile's readers are done
    load_tile<D>(ks, qkv, qkv_at(d, b, j0, 1, kvh, D), d.W, n);
    load_tile<D>(vs, qkv, qkv_at(d, b, j0, 2, kvh, D), d.W, n);
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < n && j0 + jj <= i; ++jj) {
      float s = 0.0f;
      for (int c = 0; c < D; ++c) s += q[c] * ks[jj][c];
      s = __fmul_rn(d.scale, s);
      if (s > mx) {  // a new running max: rescale what was summed so far
        const float corr = expf(mx - s);
        sum *= corr;
        for (int c = 0; c < D; ++c) acc[c] *= corr;
        mx = s;
      }
      const float p = expf(s - mx);
      sum += p;
      for (int c = 0; c < D; ++c) acc[c] += p * vs[jj][c];
    }
  }
  if (!active) return;
  const float inv = 1.0f / sum;
  for (int c = 0; c < D; ++c) store(out, row_at(d, b, i, h, D) + c, acc[c] * inv);
  lse[bh * d.T + i] = mx + logf(sum);
}

// delta[bh, i] = sum_c dout[i, c] * out[i, c] for this head: one thread per (bh, i).
template <int D>
__global__ void attention_delta_kernel(float* delta, In dout, In out, Dims d, int64_t rows) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += step) {  // grid-stride: grid_for caps the blocks
    const int64_t bh = r / d.T, i = r % d.T, b = bh / d.H, h = bh % d.H;
    const int64_t at = row_at(d, b, i, h, D);
    float acc = 0.0f;
    for (int c = 0; c < D; ++c) acc += load(dout, at + c) * load(out, at + c);
    delta[r] = acc;
  }
}

// dq[i] = scale * sum_{j <= i} P_ij (dO_i . v_j - delta_i) k_j, one thread per query row.
template <int D>
__global__ void attention_dq_kernel(Out dqkv, In dout, In qkv, const float* lse,
                                    const float* delta, Dims d) {
  constexpr int TK = kTile<D>;
  __shared__ float ks[TK][D], vs[TK][D];
  const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, kvh = h / (d.H / d.Hkv);
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kRows, i = i0 + threadIdx.x;
  const bool active = i < d.T;
  float q[D], g[D], dq[D];
  float m = 0.0f, di = 0.0f;
  if (active) {
    for (int c = 0; c < D; ++c) {
      q[c] = load(qkv, qkv_at(d, b, i, 0, h, D) + c);
      g[c] = load(dout, row_at(d, b, i, h, D) + c);
    }
    m = lse[bh * d.T + i];
    di = delta[bh * d.T + i];
  }
  for (int c = 0; c < D; ++c) dq[c] = 0.0f;
  const int64_t last = lmin(d.T, i0 + kRows) - 1;
  for (int64_t j0 = 0; j0 <= last; j0 += TK) {
    const int n = static_cast<int>(lmin(TK, last + 1 - j0));
    __syncthreads();
    load_tile<D>(ks, qkv, qkv_at(d, b, j0, 1, kvh, D), d.W, n);
    load_tile<D>(vs, qkv, qkv_at(d, b, j0, 2, kvh, D), d.W, n);
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < n && j0 + jj <= i; ++jj) {
      float s = 0.0f, dp = 0.0f;
      for (int c = 0; c < D; ++c) {
        s += q[c] * ks[jj][c];
        dp += g[c] * vs[jj][c];
      }
      const float p = expf(__fmul_rn(d.scale, s) - m);
      const float ds = d.scale * p * (dp - di);
      for (int c = 0; c < D; ++c) dq[c] += ds * ks[jj][c];
    }
  }
  if (!active) return;
  for (int c = 0; c < D; ++c) store(dqkv, qkv_at(d, b, i, 0, h, D) + c, dq[c]);
}

// dk[j] = scale * sum_h sum_{i >= j} dS_ij q_i and dv[j] = sum_h sum_{i >= j} P_ij dO_i over
// the query heads h of the key/value head, one thread per key row; query rows, their dO, lse
// and delta stream through shared memory.
template <int D>
__global__ void attention_dkdv_kernel(Out dqkv, In dout, In qkv, const float* lse,
                                      const float* delta, Dims d) {
  constexpr int TQ = kTile<D>;
  __shared__ float qs[TQ][D], gs[TQ][D], ms[TQ], ds_[TQ];
  const int64_t bk = blockIdx.x, b = bk / d.Hkv, kvh = bk % d.Hkv, group = d.H / d.Hkv;
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kRows, j = j0 + threadIdx.x;
  const bool active = j < d.T;
  float k[D], v[D], dk[D], dv[D];
  if (active) {
    for (int c = 0; c < D; ++c) {
      k[c] = load(qkv, qkv_at(d, b, j, 1, kvh, D) + c);
      v[c] = load(qkv, qkv_at(d, b, j, 2, kvh, D) + c);
    }
  }
  for (int c = 0; c < D; ++c) dk[c] = dv[c] = 0.0f;
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    const int64_t bh = b * d.H + h;
    // Queries j0.. see this block's keys; the tiles start at the block's first key.
    for (int64_t t0 = j0; t0 < d.T; t0 += TQ) {
      const int n = static_cast<int>(lmin(TQ, d.T - t0));
      __syncthreads();
      load_tile<D>(qs, qkv, qkv_at(d, b, t0, 0, h, D), d.W, n);
      load_tile<D>(gs, dout, row_at(d, b, t0, h, D), d.C, n);
      for (int e = threadIdx.x; e < n; e += blockDim.x) {
        ms[e] = lse[bh * d.T + t0 + e];
        ds_[e] = delta[bh * d.T + t0 + e];
      }
      __syncthreads();
      if (!active) continue;
      for (int ii = 0; ii < n; ++ii) {
        if (t0 + ii < j) continue;  // query t0 + ii does not see key j
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < D; ++c) {
          s += qs[ii][c] * k[c];
          dp += gs[ii][c] * v[c];
        }
        const float p = expf(__fmul_rn(d.scale, s) - ms[ii]);
        const float dsc = d.scale * p * (dp - ds_[ii]);
        for (int c = 0; c < D; ++c) {
          dv[c] += p * gs[ii][c];
          dk[c] += dsc * qs[ii][c];
        }
      }
    }
  }  // the group's query heads
  if (!active) return;
  for (int c = 0; c < D; ++c) {
    store(dqkv, qkv_at(d, b, j, 1, kvh, D) + c, dk[c]);
    store(dqkv, qkv_at(d, b, j, 2, kvh, D) + c, dv[c]);
  }
}

// x: the (sequence, head) pairs (up to 2^31 - 1); y: the blocks of kRows rows of one pair.
dim3 row_grid(int64_t B, int64_t T, int64_t H) {
  return dim3(static_cast<unsigned>(B * H), static_cast<unsigned>((T + kRows - 1) / kRows));
}

void check_sizes(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, const char* what) {
  NUPIPE_CHECK(B >= 0 && T > 0 && H > 0 && Hkv > 0 && H % Hkv == 0,
               std::string(what) + ": bad sizes");
  NUPIPE_CHECK(B * H <= INT32_MAX && (T + kRows - 1) / kRows <= 65535,
               std::string(what) + ": more (sequence, head) pairs or rows than one launch takes");
}

template <int D>
void forward_as(cudaStream_t s, Out out, float* lse, In qkv, int64_t B, const Dims& d) {
  attention_forward_kernel<D><<<row_grid(B, d.T, d.H), kRows, 0, s>>>(out, lse, qkv, d);
  NUPIPE_CUDA_LAUNCH_CHECK(attention_forward_kernel);
}

template <int D>
void backward_as(cudaStream_t s, Out dqkv, float* delta, In dout, In qkv, In out,
                 const float* lse, int64_t B, const Dims& d) {
  const int64_t rows = B * d.H * d.T;
  attention_delta_kernel<D><<<grid_for(rows), kThreads, 0, s>>>(delta, dout, out, d, rows);
  NUPIPE_CUDA_LAUNCH_CHECK(attention_delta_kernel);
  attention_dq_kernel<D><<<row_grid(B, d.T, d.H), kRows, 0, s>>>(dqkv, dout, qkv, lse, delta, d);
  NUPIPE_CUDA_LAUNCH_CHECK(attention_dq_kernel);
  attention_dkdv_kernel<D>
      <<<row_grid(B, d.T, d.Hkv), kRows, 0, s>>>(dqkv, dout, qkv, lse, delta, d);
  NUPIPE_CUDA_LAUNCH_CHECK(attention_dkdv_kernel);
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

bool fused_attention_supports(int64_t D) { return D == 16 || D == 32 || D == 64 || D == 128; }

void attention_forward(cudaStream_t s, Out out, float* lse, In qkv, int64_t B, int64_t T,
                       int64_t H, int64_t Hkv, int64_t D, float scale) {
  check_sizes(B, T, H, Hkv, D, "attention_forward");
  if (B == 0) return;
  const Dims d{T, H, H * D, scale, Hkv, (H + 2 * Hkv) * D};
  switch (D) {
    case 16: return forward_as<16>(s, out, lse, qkv, B, d);
    case 32: return forward_as<32>(s, out, lse, qkv, B, d);
    case 64: return forward_as<64>(s, out, lse, qkv, B, d);
    case 128: return forward_as<128>(s, out, lse, qkv, B, d);
    default: break;
  }
  NUPIPE_CHECK(false, "attention_forward: head_dim " + std::to_string(D) + " has no kernel");
}

void attention_backward(cudaStream_t s, Out dqkv, float* delta, In dout, In qkv, In out,
                        const float* lse, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                        int64_t D, float scale) {
  check_sizes(B, T, H, Hkv, D, "attention_backward");
  if (B == 0) return;
  const Dims d{T, H, H * D, scale, Hkv, (H + 2 * Hkv) * D};
  switch (D) {
    case 16: return backward_as<16>(s, dqkv, delta, dout, qkv, out, lse, B, d);
    case 32: return backward_as<32>(s, dqkv, delta, dout, qkv, out, lse, B, d);
    case 64: return backward_as<64>(s, dqkv, delta, dout, qkv, out, lse, B, d);
    case 128: return backward_as<128>(s, dqkv, delta, dout, qkv, out, lse, B, d);
    default: break;
  }
  NUPIPE_CHECK(false, "attention_backward: head_dim " + std::to_string(D) + " has no kernel");
}

}  // namespace nupipe::cuda
