// onednn_gemm.h: CpuBackend's bf16 products through oneDNN matmul primitives (AMX or
// AVX512-BF16 kernels where the CPU has them): fp32 accumulation, the result rounded once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/dtype.h"

namespace nupipe::runtime {
class Backend;
}

namespace nupipe::runtime::cpu {

// One row-major product C = alpha op(A) op(B) (+ bias[N]) + beta C, `batch` of them at the
// strides sa, sb, sc (elements), A and B bf16, C and the bias f32 or bf16. The bias is only
// taken with alpha = 1 (oneDNN adds it after the output scale).
struct MatmulDesc {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  int64_t lda = 0, ldb = 0, ldc = 0, sa = 0, sb = 0, sc = 0;
  float alpha = 1.0f, beta = 0.0f;
  DType c = DType::f32;
  bool bias = false;
  DType bias_dtype = DType::f32;
};

// Owns oneDNN's engine and stream, a cache of matmul primitives keyed on everything a
// primitive is specialised for (shape, strides, transposes, dtypes, alpha, beta, bias, and the
// thread count it partitions for), and the scratchpad arena they run in. The arena is oneDNN's
// user-mode scratchpad: kArenaBytes, allocated through the backend's accounting (tag
// workspace) at the first bf16 product and held until the backend goes, so a stage's
// workspace grows by exactly kArenaBytes (the cost model adds it; runtime::ModelConfig::
// gemm_arena_bytes). A call made from inside an OpenMP parallel region (the fused attention's
// per-head products) runs single-threaded in its thread's 1/team slice of the arena. A product
// oneDNN has no primitive for, or whose scratchpad would not fit, is refused (run returns
// false) and the caller computes it in fp32 (the same semantics); such refusals are counted.
// On a CPU without bf16 instructions (or with ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16) every
// product is refused: see native_bf16().
class OnednnGemm {
 public:
  static constexpr int64_t kArenaBytes = int64_t{8} << 20;

  explicit OnednnGemm(Backend& accounting);
  ~OnednnGemm();
  OnednnGemm(const OnednnGemm&) = delete;
  OnednnGemm& operator=(const OnednnGemm&) = delete;

  // Computes the product (true) or nothing (false: no primitive for it here).
  bool run(const MatmulDesc& d, const void* A, const void* B, void* C, const void* bias);

  // The kernel oneDNN picks for a representative bf16 product ([256, 768] x [768, 768]^T,
  // bf16 out) at the current thread count, e.g. "brg:avx512_core_amx_bf16"; "" if none.
  std::string probe();
  // Every distinct implementation the cached primitives use, e.g. "brg:avx512_core_bf16".
  std::string kernels() const;
  int64_t refusals() const;
  int64_t cached() const;

  // oneDNN's version, "2.6.3", and the CPU ISA it uses ("avx512_core_amx", "avx512_core_bf16",
  // "avx512_core", "avx2", ...: the CPU's, or less under ONEDNN_MAX_CPU_ISA).
  static std::string version();
  static std::string isa();
  // Whether that ISA has bf16 instructions (AVX512-BF16 or AMX). Only then are products run
  // here; elsewhere run() refuses them all, the widened fp32 path being the faster one.
  static bool native_bf16();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nupipe::runtime::cpu
