// cuda_norm_kernels.cu: LayerNorm forward/backward and the bias gradient. Row statistics are
// fp32, two-pass (mean, then centred squares: no cancellation), one block per row, combined in
// a fixed tree order; the cpu kernel accumulates them in double, so they agree to fp32
// rounding of a tree sum (~log2(C) ulps, well inside the op tests' gamma(C)). Column sums over
// rows (dw, db) are deterministic two-pass reductions in double: per-chunk partials, then the
// chunks in order, added to the fp32 gradient once, as the cpu kernel does.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

constexpr int kRowThreads = 512;
constexpr int kColTile = 32;     // columns per block of the column sums (one warp wide)
constexpr int kColRows = 8;      // row lanes per block
constexpr int kMaxChunks = 128;  // row chunks (fixed by N: the same order every run)

__global__ void layernorm_forward_kernel(Out out, float* mean, float* rstd, In x, In w, In b,
                                         int64_t C, float eps) {
  __shared__ float sh[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * C;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sum += load(x, row + c);
  const float m = block_reduce(sum, Sum{}, sh) / static_cast<float>(C);
  float sq = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = load(x, row + c) - m;
    sq += d * d;
  }
  const float var = block_reduce(sq, Sum{}, sh) / static_cast<float>(C);
  const float s = static_cast<float>(1.0 / sqrt(static_cast<double>(var) + eps));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    store(out, row + c, (load(x, row + c) - m) * s * load(w, c) + load(b, c));
  }
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = m;
    rstd[blockIdx.x] = s;
  }
}

// dx = rstd (g w - mean(g w) - xhat mean(g w xhat)), one block per row.
__global__ void layernorm_dx_kernel(Out dx, In dout, In x, In w, const float* mean,
                                    const float* rstd, int64_t C) {
  __shared__ float sh[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * C;
  const float m = mean[blockIdx.x], s = rstd[blockIdx.x];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float xhat = (load(x, row + c) - m) * s;
    const float g = load(dout, row + c) * load(w, c);
    sg += g;
    sgx += g * xhat;
  }
  const float mg = block_reduce(sg, Sum{}, sh) / static_cast<float>(C);
  const float mgx = block_reduce(sgx, Sum{}, sh) / static_cast<float>(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float xhat = (load(x, row + c) - m) * s;
    store(dx, row + c, s * (load(dout, row + c) * load(w, c) - mg - xhat * mgx));
  }
}

// Pass 1 of the column sums: block (x: column tile, y: row chunk), threads (32 columns, 8 row
// lanes). partial[chunk][c] = sum over the chunk's rows of dout (db) and, with x, of
// dout * xhat (dw). Rows of a chunk go to the 8 lanes round robin; the lanes are combined in
// lane order.
__global__ void column_partials_kernel(double* part_dw, double* part_db, In dout, In x,
                                       const float* mean, const float* rstd, int64_t N,
                                       int64_t C, int64_t rows_per_chunk) {
  __shared__ double sdw[kColRows][kColTile], sdb[kColRows][kColTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  double adw = 0.0, adb = 0.0;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColRows) {
      const float g = load(dout, r * C + c);
      adb += g;
      if (part_dw) adw += static_cast<double>(g) * ((load(x, r * C + c) - mean[r]) * rstd[r]);
    }
  }
  sdw[threadIdx.y][threadIdx.x] = adw;
  sdb[threadIdx.y][threadIdx.x] = adb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    double tdw = 0.0, tdb = 0.0;
    for (int l = 0; l < kColRows; ++l) {
      tdw += sdw[l][threadIdx.x];
      tdb += sdb[l][threadIdx.x];
    }
    if (part_dw) part_dw[blockIdx.y * C + c] = tdw;
    part_db[blockIdx.y * C + c] = tdb;
  }
}

// Pass 2: acc[c] += (float) sum over chunks, in chunk order.
__global__ void column_finish_kernel(float* dw, float* db, const double* part_dw,
                                     const double* part_db, int64_t chunks, int64_t C) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double tdb = 0.0, tdw = 0.0;
    for (int64_t k = 0; k < chunks; ++k) {
      tdb += part_db[k * C + c];
      if (dw) tdw += part_dw[k * C + c];
    }
    db[c] += static_cast<float>(tdb);
    if (dw) dw[c] += static_cast<float>(tdw);
  }
}

int64_t chunks_for(int64_t N) {
  const int64_t k = (N + 255) / 256;  // ~256 rows per chunk
  return k < 1 ? 1 : (k > kMaxChunks ? kMaxChunks : k);
}

// Both passes; dw (and x, mean, rstd) null for the bias gradient alone.
void column_sums(cudaStream_t s, float* dw, float* db, In dout, In x, const float* mean,
                 const float* rstd, int64_t N, int64_t C, void* scratch) {
  const int64_t chunks = chunks_for(N);
  const int64_t rows_per_chunk = (N + chunks - 1) / chunks;
  double* part_db = static_cast<double*>(scratch);
  double* part_dw = dw ? part_db + chunks * C : nullptr;
  const dim3 grid(static_cast<unsigned>((C + kColTile - 1) / kColTile),
                  static_cast<unsigned>(chunks));
  const dim3 block(kColTile, kColRows);
  column_partials_kernel<<<grid, block, 0, s>>>(part_dw, part_db, dout, x, mean, rstd, N, C,
                                                rows_per_chunk);
  NUPIPE_CUDA_LAUNCH_CHECK(column_partials_kernel);
  column_finish_kernel<<<grid_for(C), kThreads, 0, s>>>(dw, db, part_dw, part_db, chunks, C);
  NUPIPE_CUDA_LAUNCH_CHECK(column_finish_kernel);
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

void layernorm_forward(cudaStream_t s, Out out, float* mean, float* rstd, In x, In w, In b,
                       int64_t N, int64_t C, float eps) {
  NUPIPE_CHECK(N >= 0 && C > 0, "layernorm_forward: bad sizes");
  NUPIPE_CHECK(N <= INT32_MAX, "layernorm_forward: too many rows");
  if (N == 0) return;
  layernorm_forward_kernel<<<static_cast<unsigned>(N), row_threads(C, kRowThreads), 0, s>>>(
      out, mean, rstd, x, w, b, C, eps);
  NUPIPE_CUDA_LAUNCH_CHECK(layernorm_forward_kernel);
}

size_t column_sums_scratch(int64_t N, int64_t C) {
  return 2 * sizeof(double) * static_cast<size_t>(chunks_for(N) * C);
}

void layernorm_backward_weight(cudaStream_t s, float* dw, float* db, In dout, In x,
                               const float* mean, const float* rstd, int64_t N, int64_t C,
                               void* scratch) {
  NUPIPE_CHECK(N >= 0 && C > 0, "layernorm_backward_weight: bad sizes");
  if (N == 0) return;
  column_sums(s, dw, db, dout, x, mean, rstd, N, C, scratch);
}

void layernorm_backward_input(cudaStream_t s, Out dx, In dout, In x, In w, const float* mean,
                              const float* rstd, int64_t N, int64_t C) {
  NUPIPE_CHECK(N >= 0 && C > 0, "layernorm_backward_input: bad sizes");
  NUPIPE_CHECK(N <= INT32_MAX, "layernorm_backward_input: too many rows");
  if (N == 0) return;
  layernorm_dx_kernel<<<static_cast<unsigned>(N), row_threads(C, kRowThreads), 0, s>>>(
      dx, dout, x, w, mean, rstd, C);
  NUPIPE_CUDA_LAUNCH_CHECK(layernorm_dx_kernel);
}

void layernorm_backward(cudaStream_t s, Out dx, float* dw, float* db, In dout, In x, In w,
                        const float* mean, const float* rstd, int64_t N, int64_t C,
                        void* scratch) {
  NUPIPE_CHECK(N >= 0 && C > 0, "layernorm_backward: bad sizes");
  NUPIPE_CHECK(N <= INT32_MAX, "layernorm_backward: too many rows");
  // dw, db first: they read dout, which dx may overwrite.
  layernorm_backward_weight(s, dw, db, dout, x, mean, rstd, N, C, scratch);
  layernorm_backward_input(s, dx, dout, x, w, mean, rstd, N, C);
}

void bias_backward(cudaStream_t s, float* db, In dout, int64_t N, int64_t C, void* scratch) {
  NUPIPE_CHECK(N >= 0 && C >= 0, "bias_backward: bad sizes");
  if (N == 0 || C == 0) return;
  column_sums(s, nullptr, db, dout, In{}, nullptr, nullptr, N, C, scratch);
}

}  // namespace nupipe::cuda
