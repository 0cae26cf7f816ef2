// cuda_device.cuh: device helpers shared by the kernel files: typed loads/stores (bf16 widened
// exactly, rounded once to nearest even on store), warp/block reductions in a fixed order,
// launch sizing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/cuda/cuda_kernels.h"

namespace nupipe::cuda {

__device__ __forceinline__ float load(In a, int64_t i) {
  if (a.bf16) {
    const uint32_t u = static_cast<const uint16_t*>(a.p)[i];
    return __uint_as_float(u << 16);  // exact
  }
  return static_cast<const float*>(a.p)[i];
}
__device__ __forceinline__ float load(Out a, int64_t i) { return load(In{a.p, a.bf16}, i); }
__device__ __forceinline__ void store(Out a, int64_t i, float v) {
  if (a.bf16) {
    static_cast<__nv_bfloat16*>(a.p)[i] = __float2bfloat16_rn(v);  // the one rounding
  } else {
    static_cast<float*>(a.p)[i] = v;
  }
}

struct Sum {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly over the 32 lanes (all must be active): every lane gets the result, and the
// combination order is fixed, so the result is deterministic.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Over the block (blockDim.x a multiple of 32, <= 1024; one-dimensional): every thread gets
// the result, combined warp by warp in a fixed order. `shared` holds 32 T.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* shared) {
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = shared[0];
  for (int w = 1; w < warps; ++w) r = op(r, shared[w]);
  return r;
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : b));
}
// Threads for one block per row of `len` elements: a multiple of 32, at most `max`.
inline int row_threads(int64_t len, int max) {
  const int64_t t = (len + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > max ? max : t));
}

}  // namespace nupipe::cuda
