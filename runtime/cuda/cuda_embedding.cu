// cuda_embedding.cu: token + position embedding forward, and a deterministic backward: the
// tokens are stably sorted (CUB radix sort of (token, position) pairs), then each run of equal
// tokens is summed into its table row by one thread per column, in increasing position order,
// starting from the row's current value - the cpu kernel's exact order, with no float atomics.
#include <cub/device/device_radix_sort.cuh>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.cuh"

namespace nupipe::cuda {

namespace {

__global__ void embedding_forward_kernel(Out out, const int32_t* tokens, In wte, In wpe,
                                         int64_t N, int64_t T, int64_t C) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < N * C;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / C, c = k % C;
    const int64_t tok = tokens[i];
    if (wpe.p) store(out, k, load(wte, tok * C + c) + load(wpe, (i % T) * C + c));
    else store(out, k, load(wte, tok * C + c));  // no position table (llama)
  }
}

__global__ void iota_kernel(int32_t* idx, int64_t N) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    idx[i] = static_cast<int32_t>(i);
  }
}

// Block x: position p in sorted order; threads: columns. Only the first position of each run
// of equal tokens works: it adds the run's rows, in position order, to the table row.
__global__ void embedding_dwte_kernel(float* dwte, In dout, const int32_t* sorted_tok,
                                      const int32_t* sorted_pos, int64_t N, int64_t C) {
  const int64_t p = blockIdx.x;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int32_t tok = sorted_tok[p];
  if (p > 0 && sorted_tok[p - 1] == tok) return;
  float* d = dwte + static_cast<int64_t>(tok) * C + c;
  float acc = *d;
  for (int64_t q = p; q < N && sorted_tok[q] == tok; ++q) {
    acc += load(dout, static_cast<int64_t>(sorted_pos[q]) * C + c);
  }
  *d = acc;
}

// One thread per (t, c): dwpe[t] += dout[i] for i = t, t + T, ... in order.
__global__ void embedding_dwpe_kernel(float* dwpe, In dout, int64_t N, int64_t T, int64_t C) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < T * C;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = k / C, c = k % C;
    float acc = dwpe[k];
    for (int64_t i = t; i < N; i += T) acc += load(dout, i * C + c);
    dwpe[k] = acc;
  }
}

// The scratch: sorted tokens, positions in, positions out, then CUB's temporary storage.
struct Layout {
  size_t keys = 0, pos_in = 0, pos_out = 0, temp = 0, temp_bytes = 0, total = 0;
};
size_t round256(size_t b) { return (b + 255) / 256 * 256; }
Layout layout(int64_t N) {
  Layout l;
  size_t temp_bytes = 0;
  NUPIPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(N)));
  const size_t arr = round256(sizeof(int32_t) * static_cast<size_t>(N));
  l.keys = 0;
  l.pos_in = arr;
  l.pos_out = 2 * arr;
  l.temp = 3 * arr;
  l.temp_bytes = temp_bytes;
  l.total = 3 * arr + round256(temp_bytes);
  return l;
}

}  // namespace

// ------------------------------------------------------------------------------ launchers

void embedding_forward(cudaStream_t s, Out out, const int32_t* tokens, In wte, In wpe,
                       int64_t N, int64_t T, int64_t C) {
  NUPIPE_CHECK(N >= 0 && T > 0 && C >= 0, "embedding_forward: bad sizes");
  if (N * C == 0) return;
  embedding_forward_kernel<<<grid_for(N * C), kThreads, 0, s>>>(out, tokens, wte, wpe, N, T, C);
  NUPIPE_CUDA_LAUNCH_CHECK(embedding_forward_kernel);
}

size_t embedding_backward_scratch(int64_t N) { return N > 0 ? layout(N).total : 0; }

void embedding_backward(cudaStream_t s, float* dwte, float* dwpe, In dout,
                        const int32_t* tokens, int64_t N, int64_t T, int64_t C, void* scratch,
                        size_t scratch_bytes) {
  NUPIPE_CHECK(N >= 0 && T > 0 && C >= 0, "embedding_backward: bad sizes");
  NUPIPE_CHECK(N <= INT32_MAX, "embedding_backward: more than 2^31 tokens in one call");
  if (N * C == 0) return;
  const Layout l = layout(N);
  NUPIPE_CHECK(scratch_bytes >= l.total, "embedding_backward: scratch too small");
  char* base = static_cast<char*>(scratch);
  int32_t* keys = reinterpret_cast<int32_t*>(base + l.keys);
  int32_t* pos_in = reinterpret_cast<int32_t*>(base + l.pos_in);
  int32_t* pos_out = reinterpret_cast<int32_t*>(base + l.pos_out);
  iota_kernel<<<grid_for(N), kThreads, 0, s>>>(pos_in, N);
  NUPIPE_CUDA_LAUNCH_CHECK(iota_kernel);
  size_t temp_bytes = l.temp_bytes;
  // Radix sort is stable: equal tokens keep increasing positions.
  NUPIPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + l.temp, temp_bytes, tokens, keys,
                                                    pos_in, pos_out, static_cast<int>(N), 0,
                                                    static_cast<int>(8 * sizeof(int32_t)), s));
  const int threads = C < kThreads ? row_threads(C, kThreads) : kThreads;
  const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>((C + threads - 1) / threads));
  NUPIPE_CHECK(grid.y <= 65535, "embedding_backward: C too large");
  embedding_dwte_kernel<<<grid, threads, 0, s>>>(dwte, dout, keys, pos_out, N, C);
  NUPIPE_CUDA_LAUNCH_CHECK(embedding_dwte_kernel);
  if (!dwpe) return;  // no position table (llama)
  embedding_dwpe_kernel<<<grid_for(T * C), kThreads, 0, s>>>(dwpe, dout, N, T, C);
  NUPIPE_CUDA_LAUNCH_CHECK(embedding_dwpe_kernel);
}

}  // namespace nupipe::cuda
