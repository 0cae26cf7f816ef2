// gemm_peak.cpp: the GEMM ceiling nupipe's cpu backend reaches on this CPU, per precision:
// CpuBackend::gemm itself (bf16 x bf16 -> f32 through oneDNN, fp32 through OpenBLAS) on square
// and transformer-shaped products at a given thread count, best-of timing per shape.
//   gemm_peak [--threads N] [--tokens 1024] [--d-model 768] [--seconds 0.3]
// Prints the kernels, one line per shape, then `gemm_peak_gflops_bf16 X` and
// `gemm_peak_gflops_fp32 X` (each the best shape: the ceiling end-to-end GFLOP/s is held to).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/tensor.h"

namespace {

using namespace nupipe::runtime;

struct GemmShape {
  std::string name;
  int m, n, k;  // C[m x n] = op(A)[m x k] * op(B)[k x n]
  bool ta, tb;  // A stored [k x m] / B stored [n x k] (row-major) when transposed
};

double time_shape(CpuBackend& be, const GemmShape& s, DType dt, double seconds, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(s.m) * s.k), b(static_cast<size_t>(s.k) * s.n);
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  Tensor A = Tensor::empty(be, {static_cast<int64_t>(a.size())}, dt, MemTag::workspace);
  Tensor B = Tensor::empty(be, {static_cast<int64_t>(b.size())}, dt, MemTag::workspace);
  Tensor C = Tensor::zeros(be, {static_cast<int64_t>(s.m) * s.n}, DType::f32, MemTag::workspace);
  from_host(A, a);
  from_host(B, b);
  const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  auto call = [&] {
    be.gemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.n);
  };
  using clock = std::chrono::steady_clock;
  call();
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 3 || total < seconds; ++rep) {
    const auto t0 = clock::now();
    call();
    const double dt_s = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::min(best, dt_s);
    total += dt_s;
  }
  return 2.0 * s.m * s.n * s.k / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nupipe cpu backend GEMM GFLOP/s ceiling (bf16 through oneDNN, fp32 OpenBLAS)"};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int tokens = 1024, d_model = 768;
  double seconds = 0.3;
  app.add_option("--threads", threads, "threads (default: all hardware threads)")
      ->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "M of the transformer shapes (micro_batch x seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_option("--d-model", d_model, "model width C of the transformer shapes")
      ->check(CLI::PositiveNumber);
  app.add_option("--seconds", seconds, "timing budget per shape")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  CpuBackend be;
  be.set_threads(threads);
  const int M = tokens, C = d_model, F = 4 * d_model;
  // Linear y[M x out] = x[M x in] W^T: forward (N,T); dx = dy W (N,N); dW = dy^T x (T,N).
  const std::vector<GemmShape> shapes = {
      {"square 1024", 1024, 1024, 1024, false, false},
      {"qkv fwd", M, 3 * C, C, false, true},
      {"attn.proj fwd", M, C, C, false, true},
      {"mlp.fc fwd", M, F, C, false, true},
      {"mlp.proj fwd", M, C, F, false, true},
      {"mlp.fc dx", M, C, F, false, false},
      {"mlp.fc dW", F, C, M, true, false},
      {"lm 8192-row chunk fwd", M, 8192, C, false, true},
  };
  std::printf("gemm_peak: %d threads; %s\n", threads, be.gemm_info().c_str());
  std::printf("%-24s %6s %6s %6s  %s  %12s %12s\n", "shape", "M", "N", "K", "op", "bf16 GFLOP/s",
              "fp32 GFLOP/s");
  std::mt19937 rng(1234);
  double peak_bf16 = 0, peak_fp32 = 0;
  for (const GemmShape& s : shapes) {
    const double g16 = time_shape(be, s, DType::bf16, seconds, rng);
    const double g32 = time_shape(be, s, DType::f32, seconds, rng);
    peak_bf16 = std::max(peak_bf16, g16);
    peak_fp32 = std::max(peak_fp32, g32);
    std::printf("%-24s %6d %6d %6d  %c%c  %12.1f %12.1f\n", s.name.c_str(), s.m, s.n, s.k,
                s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', g16, g32);
    std::fflush(stdout);
  }
  std::printf("gemm_peak_gflops_bf16 %.1f\n", peak_bf16);
  std::printf("gemm_peak_gflops_fp32 %.1f\n", peak_fp32);
  return 0;
}
