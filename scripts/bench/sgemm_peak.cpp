// sgemm_peak.cpp: the fp32 GEMM ceiling of this CPU — OpenBLAS sgemm GFLOP/s on square and
// transformer-shaped matrices (forward and both backward layouts) at a given thread count.
//   sgemm_peak [--threads N] [--tokens 1024] [--d-model 768] [--seconds 0.3]
// Prints one line per shape, then `sgemm_peak_gflops X` (the best shape: the ceiling).
#include <cblas.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Shape {
  std::string name;
  int m, n, k;      // C[m x n] = op(A)[m x k] * op(B)[k x n]
  bool ta, tb;      // A stored [k x m] / B stored [n x k] (row-major) when transposed
};

// Best-of GFLOP/s for one shape: one untimed call, then repeated calls until `seconds` have
// passed (at least 3), keeping the fastest.
double time_shape(const Shape& s, double seconds, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(s.m) * s.k), b(static_cast<size_t>(s.k) * s.n),
      c(static_cast<size_t>(s.m) * s.n, 0.0f);
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  auto call = [&] {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
  };
  using clock = std::chrono::steady_clock;
  call();
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 3 || total < seconds; ++rep) {
    const auto t0 = clock::now();
    call();
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  return 2.0 * s.m * s.n * s.k / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"OpenBLAS sgemm GFLOP/s ceiling for nupipe's CPU benchmarks"};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int tokens = 1024, d_model = 768;
  double seconds = 0.3;
  app.add_option("--threads", threads, "OpenBLAS threads (default: all hardware threads)")
      ->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "M of the transformer shapes (micro_batch x seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_option("--d-model", d_model, "model width C of the transformer shapes")
      ->check(CLI::PositiveNumber);
  app.add_option("--seconds", seconds, "timing budget per shape")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  openblas_set_num_threads(threads);
  const int M = tokens, C = d_model, F = 4 * d_model;
  // Linear y[M x out] = x[M x in] W^T: forward (N,T); grad input dx = dy W (N,N); grad weight
  // dW = dy^T x (T,N).
  const std::vector<Shape> shapes = {
      {"square 512", 512, 512, 512, false, false},
      {"square 1024", 1024, 1024, 1024, false, false},
      {"square 2048", 2048, 2048, 2048, false, false},
      {"qkv fwd", M, 3 * C, C, false, true},
      {"attn.proj fwd", M, C, C, false, true},
      {"mlp.fc fwd", M, F, C, false, true},
      {"mlp.proj fwd", M, C, F, false, true},
      {"mlp.fc dx", M, C, F, false, false},
      {"mlp.fc dW", F, C, M, true, false},
      {"lm 8192-row chunk fwd", M, 8192, C, false, true},
  };
  std::printf("sgemm_peak: OpenBLAS %s, %d threads (%s)\n", openblas_get_config(), threads,
              openblas_get_parallel() == 0 ? "sequential build" : "parallel build");
  std::printf("%-24s %6s %6s %6s  %s  %10s\n", "shape", "M", "N", "K", "op", "GFLOP/s");
  std::mt19937 rng(1234);
  double peak = 0;
  for (const Shape& s : shapes) {
    const double g = time_shape(s, seconds, rng);
    peak = std::max(peak, g);
    std::printf("%-24s %6d %6d %6d  %c%c  %10.1f\n", s.name.c_str(), s.m, s.n, s.k,
                s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', g);
    std::fflush(stdout);
  }
  std::printf("sgemm_peak_gflops %.1f\n", peak);
  return 0;
}
