// test_cpu_gemm.cpp: every GEMM path of CpuBackend (gemm, gemm_batched, linear_forward with
// bias, beta and GELU; the fused attention's products are in test_fused_attention.cpp) with bf16
// and fp32 operands against a float64 evaluation, and the oneDNN machinery under them: the
// kernel that runs, the scratchpad arena's accounting, determinism, thread counts. ctest runs
// this file again with ONEDNN_MAX_CPU_ISA=AVX512_CORE and =AVX2 (cpu_gemm_isa_*), where the
// bf16 products take the widened fp32 path: the same tolerances hold there.
//
// Tolerance per element, argued: the operands are bf16 values (exact in fp32), and a product of
// two bf16 significands (8 bits each) is exact in fp32 (16 <= 24 bits), so a bf16 x bf16 GEMM
// with fp32 accumulation differs from the exact sum only by the fp32 additions: at most
// gamma(K) sum_k |a_ik b_kj| for any summation order (gamma(n) = n 2^-24 / (1 - n 2^-24)),
// plus |alpha|-scaling and the beta C and bias terms' own fp32 rounding (2^-24 of each). A bf16
// output then adds one rounding, 2^-8 |c| (the result is rounded once, to nearest even), which
// is what the bf16 cases' worst d/tol (printed, ~0.9) is made of; rounding to bf16 inside the
// K-sum would miss the bound by orders of magnitude at K = 768. fp32 outputs sit near 0.001.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/onednn_gemm.h"
#include "runtime/tensor.h"

namespace nupipe::runtime {
namespace {

constexpr DType kB = DType::bf16, kS = DType::f32;
constexpr double kU = 0x1p-8;  // one bf16 rounding
double gamma(int64_t n) { return n * 0x1p-24 / (1 - n * 0x1p-24); }

std::vector<float> values(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = round_to_bf16(dist(rng));
  return v;
}

Tensor put(Backend& be, const std::vector<float>& v, DType dt) {
  Tensor t = Tensor::empty(be, {static_cast<int64_t>(v.size())}, dt, MemTag::workspace);
  from_host(t, v);
  return t;
}

bool capped() { return std::getenv("ONEDNN_MAX_CPU_ISA") != nullptr; }

// The exact product op(A) op(B) in double, and sum |a||b|, for element (i, j).
struct Exact {
  double v, abs;
};
Exact exact(bool ta, bool tb, int64_t K, const std::vector<float>& A, int64_t lda,
            const std::vector<float>& B, int64_t ldb, int64_t i, int64_t j, int64_t oa = 0,
            int64_t ob = 0) {
  Exact e{0, 0};
  for (int64_t k = 0; k < K; ++k) {
    const double a = A[oa + (ta ? k * lda + i : i * lda + k)];
    const double b = B[ob + (tb ? j * ldb + k : k * ldb + j)];
    e.v += a * b;
    e.abs += std::abs(a * b);
  }
  return e;
}

struct Result {
  int64_t bad = 0;
  double worst = 0;
};
void expect_within(const std::string& what, const Result& r) {
  EXPECT_EQ(r.bad, 0) << what << ": elements outside the tolerance";
  std::printf("[ cpu gemm ] %-52s d/tol %.3f\n", what.c_str(), r.worst);
}
void account(Result& r, double got, double ref, double tol, const std::string& what, int64_t i) {
  const double d = std::abs(got - ref);
  if (!(d <= tol) && r.bad++ < 3) {
    ADD_FAILURE() << what << " [" << i << "]: got " << got << ", exact " << ref << ", tol " << tol;
  }
  if (tol > 0) r.worst = std::max(r.worst, d / tol);
}

TEST(CpuGemm, ProductsMatchFloat64WithinOneRounding) {
  CpuBackend be;
  const int64_t M = 37, N = 50, K = 768;
  struct Mode {
    const char* name;
    DType ab, c;
    float alpha, beta;
  };
  const Mode modes[] = {{"bf16 -> bf16", kB, kB, 1.0f, 0.0f},
                        {"bf16 -> bf16, alpha .5 beta 1", kB, kB, 0.5f, 1.0f},
                        {"bf16 -> f32 += (weight grad)", kB, kS, 1.0f, 1.0f},
                        {"bf16 -> f32, alpha .125", kB, kS, 0.125f, 0.0f},
                        {"f32 -> f32 beta 1", kS, kS, 1.0f, 1.0f}};
  uint32_t seed = 1;
  for (const Mode& m : modes) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 2, tb = t & 1;
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
      const std::vector<float> a = values((ta ? K : M) * lda, seed++);
      const std::vector<float> b = values((tb ? N : K) * ldb, seed++, 0.05f);
      const std::vector<float> c0 = values(M * ldc, seed++);
      Tensor A = put(be, a, m.ab), B = put(be, b, m.ab), C = put(be, c0, m.c);
      be.gemm(ta, tb, M, N, K, m.alpha, A.data(), lda, B.data(), ldb, m.beta, C.data(), ldc);
      const std::vector<float> got = to_host(C);
      const std::string what = std::string("gemm ") + (ta ? "T" : "N") + (tb ? "T " : "N ") + m.name;
      Result r;
      for (int64_t i = 0; i < M * ldc; ++i) {
        const int64_t row = i / ldc, col = i % ldc;
        if (col >= N) {  // the gaps between rows stay as they were
          account(r, got[i], c0[i], 0.0, what, i);
          continue;
        }
        const Exact e = exact(ta, tb, K, a, lda, b, ldb, row, col);
        const double ref = m.alpha * e.v + m.beta * c0[i];
        const double tol = gamma(K + 2) * (std::abs(m.alpha) * e.abs + std::abs(m.beta * c0[i])) +
                           (m.c == kB ? kU * std::abs(ref) : 0.0);
        account(r, got[i], ref, tol, what, i);
      }
      expect_within(what, r);
    }
  }
}

TEST(CpuGemm, BatchedMatchesFloat64) {
  CpuBackend be;
  const int64_t M = 16, N = 24, K = 64, batch = 6;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 2, tb = t & 1;
    const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 3, ldc = N + 1;
    const int64_t sa = (ta ? K : M) * lda + 7, sb = (tb ? N : K) * ldb + 5, sc = M * ldc + 3;
    const std::vector<float> a = values(batch * sa, 10 + t), b = values(batch * sb, 20 + t, 0.5f);
    const std::vector<float> c0 = values(batch * sc, 30 + t);
    for (DType c : {kB, kS}) {
      Tensor A = put(be, a, kB), B = put(be, b, kB), C = put(be, c0, c);
      be.gemm_batched(ta, tb, M, N, K, 1.0f, A.data(), lda, sa, B.data(), ldb, sb, 0.0f, C.data(),
                      ldc, sc, batch);
      const std::vector<float> got = to_host(C);
      const std::string what = std::string("gemm_batched ") + (ta ? "T" : "N") + (tb ? "T" : "N") +
                               " x6 strided bf16 -> " + (c == kB ? "bf16" : "f32");
      Result r;
      for (int64_t i = 0; i < batch * sc; ++i) {
        const int64_t mat = i / sc, e = i % sc;
        if (e >= M * ldc || e % ldc >= N) {
          account(r, got[i], c0[i], 0.0, what, i);
          continue;
        }
        const Exact x = exact(ta, tb, K, a, lda, b, ldb, e / ldc, e % ldc, mat * sa, mat * sb);
        account(r, got[i], x.v, gamma(K) * x.abs + (c == kB ? kU * std::abs(x.v) : 0.0), what, i);
      }
      expect_within(what, r);
    }
  }
}

// linear_forward: y = x w^T + b (+ beta y), gelu_out = gelu(y) from the fp32 pre-activation.
// y: gamma(K + 2) (sum |x w| + |b| + |beta y0|) + one rounding. gelu: its own rounding, plus y's
// fp32 error times |gelu'| <= 1.13, plus 2^-18 of its terms for tanh's last bits.
TEST(CpuGemm, LinearForwardBiasBetaAndGelu) {
  CpuBackend be;
  const int64_t N = 37, K = 768, O = 96;
  uint32_t seed = 100;
  for (DType dt : {kB, kS}) {
    for (bool gelu : {false, true}) {
      const float beta = gelu ? 0.0f : 1.0f;
      const std::vector<float> x = values(N * K, seed++), w = values(O * K, seed++, 0.05f),
                               b = values(O, seed++), y0 = values(N * O, seed++);
      Tensor X = put(be, x, dt), W = put(be, w, dt), Bv = put(be, b, dt), Y = put(be, y0, dt),
             G = put(be, std::vector<float>(N * O, NAN), dt);
      be.linear_forward(Y.data(), X.data(), W.data(), Bv.data(), N, K, O, beta,
                        gelu ? G.data() : DevPtr{});
      const std::vector<float> y = to_host(Y), g = to_host(G);
      const std::string what = std::string("linear_forward ") + (dt == kB ? "bf16" : "f32") +
                               (gelu ? " +gelu" : " beta=1");
      Result ry, rg;
      for (int64_t i = 0; i < N * O; ++i) {
        const Exact e = exact(false, true, K, x, K, w, K, i / O, i % O);
        const double ref = e.v + b[i % O] + beta * y0[i];
        const double err = gamma(K + 2) * (e.abs + std::abs(b[i % O]) + std::abs(beta * y0[i]));
        account(ry, y[i], ref, err + (dt == kB ? kU * std::abs(ref) : 0.0), what + " y", i);
        if (gelu) {
          const double gr = 0.5 * ref * (1 + std::tanh(0.7978845608028654 *
                                                       (ref + 0.044715 * ref * ref * ref)));
          const double v = std::abs(ref);
          account(rg, g[i], gr,
                  1.13 * err + 0x1p-18 * (1 + v + v * v * v) + (dt == kB ? kU * std::abs(gr) : 0),
                  what + " gelu", i);
        }
      }
      expect_within(what + " y", ry);
      if (gelu) expect_within(what + " gelu", rg);
    }
  }
}

// The kernel that runs is the one the start-up line names; capped below bf16 instructions, the
// products take the widened path and say so.
TEST(CpuGemm, DispatchIsNamed) {
  CpuBackend be;
  const std::string info = be.gemm_info();
  std::printf("[ cpu gemm ] isa %s: %s\n", cpu::OnednnGemm::isa().c_str(), info.c_str());
  EXPECT_NE(info.find("onednn " + cpu::OnednnGemm::version()), std::string::npos) << info;
  EXPECT_NE(info.find("fp32 openblas sgemm"), std::string::npos) << info;
  const std::string cap = capped() ? std::getenv("ONEDNN_MAX_CPU_ISA") : "";
  if (cap == "AVX2" || cap == "AVX512_CORE") {
    EXPECT_FALSE(cpu::OnednnGemm::native_bf16()) << "ONEDNN_MAX_CPU_ISA=" << cap << " ignored";
    EXPECT_NE(info.find("bf16 widened to fp32"), std::string::npos) << info;
  }
  if (cpu::OnednnGemm::native_bf16()) {
    EXPECT_NE(info.find("bf16 onednn"), std::string::npos) << info;
    EXPECT_NE(info.find("brg:"), std::string::npos) << "not a brgemm kernel: " << info;
    // A product runs on the named kernel, oneDNN refusing none.
    Tensor a = put(be, values(64 * 64, 1), kB), c = put(be, std::vector<float>(64 * 64), kS);
    be.gemm(false, true, 64, 64, 64, 1.0f, a.data(), 64, a.data(), 64, 0.0f, c.data(), 64);
    EXPECT_EQ(be.onednn().refusals(), 0);
    EXPECT_NE(be.onednn().kernels().find("brg:"), std::string::npos) << be.onednn().kernels();
  }
}

// oneDNN's scratchpad is one arena of kArenaBytes under the workspace tag, taken at the first
// bf16 product (whichever path computes it) and kept, whatever the shapes; fp32 products take
// none. It goes with the backend.
TEST(CpuGemm, ScratchpadArenaIsAccountedOnce) {
  CpuBackend be;
  const MemoryAccounting& mem = be.memory();
  Tensor a32 = put(be, values(96 * 768, 2), kS), c32 = put(be, std::vector<float>(96 * 96), kS);
  const int64_t base = mem.current(MemTag::workspace);
  be.gemm(false, true, 96, 96, 768, 1.0f, a32.data(), 768, a32.data(), 768, 0.0f, c32.data(), 96);
  EXPECT_EQ(mem.current(MemTag::workspace), base) << "an fp32 product took workspace";
  Tensor a = put(be, values(96 * 768, 3), kB), c = put(be, std::vector<float>(96 * 96), kB);
  const int64_t before = mem.current(MemTag::workspace);
  be.gemm(false, true, 96, 96, 768, 1.0f, a.data(), 768, a.data(), 768, 0.0f, c.data(), 96);
  EXPECT_EQ(mem.current(MemTag::workspace), before + cpu::OnednnGemm::kArenaBytes);
  for (int t = 0; t < 4; ++t) {  // other shapes, transposes and a batched product: no more
    be.gemm(t & 2, t & 1, 96, 96, 768 - 64 * t, 0.5f, a.data(), t & 2 ? 96 : 768, a.data(),
            t & 1 ? 768 : 96, 1.0f, c.data(), 96);
  }
  be.gemm_batched(false, true, 16, 16, 64, 1.0f, a.data(), 64, 1024, a.data(), 64, 1024, 0.0f,
                  c.data(), 16, 256, 6);
  EXPECT_EQ(mem.current(MemTag::workspace), before + cpu::OnednnGemm::kArenaBytes);
  if (cpu::OnednnGemm::native_bf16()) {
    EXPECT_GE(be.onednn().cached(), 6) << "one primitive per distinct product";
    EXPECT_EQ(be.onednn().refusals(), 0) << "a scratchpad did not fit the arena";
  }
  // Released with the backend: a second backend starts from nothing.
  CpuBackend other;
  EXPECT_EQ(other.memory().current(MemTag::workspace), 0);
}

// The same call gives the same bits, at 1 and at 2 threads (each its own partition); the fused
// attention's single-threaded products inside its parallel loop likewise.
TEST(CpuGemm, DeterministicAtEachThreadCount) {
  const int64_t M = 256, N = 192, K = 768;
  const std::vector<float> a = values(M * K, 7), b = values(N * K, 8, 0.05f);
  const int process_threads = omp_get_max_threads();
  for (int threads : {1, 2}) {
    CpuBackend be;
    be.set_threads(threads);
    Tensor A = put(be, a, kB), B = put(be, b, kB);
    std::vector<std::vector<float>> outs;
    for (int rep = 0; rep < 2; ++rep) {
      Tensor C = put(be, std::vector<float>(M * N, 0.0f), kS);
      be.gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
      outs.push_back(to_host(C));
    }
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * 4), 0)
        << "gemm not deterministic at " << threads << " threads";
    Result r;
    for (int64_t i = 0; i < M * N; i += 7) {
      const Exact e = exact(false, true, K, a, K, b, K, i / N, i % N);
      account(r, outs[0][i], e.v, gamma(K) * e.abs, "gemm threads", i);
    }
    expect_within("gemm NT 256x192x768 bf16 -> f32 at " + std::to_string(threads) + " thread(s)", r);
  }
  CpuBackend restore;  // the process's OpenMP thread count as it was, for later tests
  restore.set_threads(process_threads);
}

}  // namespace
}  // namespace nupipe::runtime
