// test_backend_ops.cpp: the op-test suite. Every Backend kernel that takes bf16 operands runs,
// on every compiled backend, with bf16 operands against CpuBackend's fp32 kernels on the same
// values (random data, GPT-like shapes: N = 37 rows, C = 64, T = 16, V = 97, K = 768); plus
// convert's rounding (to nearest, ties to even; NaN, inf, -0, overflow) and exactness.
//
// Tolerances. Inputs are rounded to bf16 first, so the fp32 reference and the bf16 path read
// identical values. A kernel that computes in fp32 and rounds its output once to nearest even
// then differs from the fp32 result y by one bf16 rounding: |y_bf16 - y| <= u |y|, u = 2^-8
// (8-bit significand). Each check adds, per op, what two correct fp32 evaluations of the same
// formula may differ by on another backend: gamma(n) = 2 n 2^-24 times the sum of |terms| for
// a sum of n terms (any two orders), kF = 2^-18 (64 fp32 ulps) of the size of an elementwise
// formula's terms. Both are far below u: rounding twice, or to bf16 inside a K = 768 reduction,
// fails by several times the bound. Outputs kept in fp32 (mean/rstd, weight and bias
// gradients, an f32 C) get no u term, only the fp32 allowance.
// Bitwise: (a) add, accumulate, add_bias and embedding_forward do one IEEE fp32 add per
// element, so on every backend their bf16 output must be exactly bf16_from_f32(fp32 result):
// the "rounds once, at the output" contract. (b) A backend that runs the reference's own fp32
// kernels on widened operands (cpu, runtime/cpu/staging.h) must match bitwise everywhere: bf16
// outputs equal bf16_from_f32 of the fp32 kernel's output (gelu included), fp32 outputs the
// fp32 kernel's; except the products with both operands bf16, which the cpu runs through
// oneDNN's bf16 kernels (another fp32 summation order: held to the tolerances, and across ISAs
// by tests/unit/test_cpu_gemm.cpp). (Another backend's tanhf/expf/sum order may differ in the last fp32 bits, so
// there gelu and the rest are held to the tolerances.) Each check prints a "[ bf16 ops ]" line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends.h"
#include "runtime/backend.h"
#include "runtime/cpu/cpu_backend.h"

namespace nupipe::runtime {
namespace {

constexpr double kU = 0x1p-8;   // bf16 unit roundoff: one rounding of an output
constexpr double kF = 0x1p-18;  // fp32 evaluation slack of an elementwise formula's terms
double gamma(int64_t n) { return 2.0 * static_cast<double>(n) * 0x1p-24; }  // two sum orders
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr DType kB = DType::bf16, kS = DType::f32;

uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

using testing::BackendCase;
using testing::compiled_backends;

using Tol = std::function<double(int64_t i, double ref)>;

class BackendOps : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    const std::string why = testing::unavailable_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why;
    be_ = GetParam().make();
  }

  // One operand on both sides: f32 on the reference, `dt` on the backend under test.
  struct Pair { Tensor r, t; };
  Pair pair(const std::vector<float>& v, DType dt) { return {put(ref_, v, kS), put(*be_, v, dt)}; }
  static Tensor put(Backend& b, const std::vector<float>& v, DType dt) {
    Tensor t = Tensor::empty(b, {static_cast<int64_t>(v.size())}, dt, MemTag::workspace);
    from_host(t, v);
    return t;
  }
  // Normal(0, sigma) + mean, rounded to bf16: both sides read the same values.
  std::vector<float> values(int64_t n, float sigma = 1.0f, float mean = 0.0f) {
    std::mt19937 rng(seed_++);
    std::normal_distribution<float> dist(mean, sigma);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = round_to_bf16(dist(rng));
    return v;
  }
  std::vector<float> nans(int64_t n) { return std::vector<float>(static_cast<size_t>(n), kNaN); }

  // Checks |got - ref| <= tol(i, ref) everywhere (NaN fails), bitwise equality with the
  // reference rounded to got's dtype where required or where the backend runs the reference
  // kernels, and prints the worst errors.
  void check(const std::string& what, const Tensor& got_t, const Tensor& ref_t, const Tol& tol,
             bool bitwise_required = false) {
    const std::vector<float> got = to_host(got_t), ref = to_host(ref_t);
    ASSERT_EQ(got.size(), ref.size()) << what;
    const bool rounded = got_t.dtype() == kB;
    const bool bitwise =
        bitwise_required || (GetParam().runs_reference_kernels && !bf16_product_);
    double max_abs = 0, max_rel = 0, worst = 0;
    int64_t bad = 0, equal = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
      const double r = ref[i], d = std::abs(static_cast<double>(got[i]) - r), t = tol(i, r);
      if (!(d <= t) && bad++ < 5) {
        ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", fp32 " << r << ", tol "
                      << t;
      }
      max_abs = std::max(max_abs, d);
      if (r != 0) max_rel = std::max(max_rel, d / std::abs(r));
      if (t > 0) worst = std::max(worst, d / t);
      equal += bits(got[i]) == bits(rounded ? round_to_bf16(ref[i]) : ref[i]);
    }
    EXPECT_EQ(bad, 0) << what << ": " << bad << " elements outside the tolerance";
    const int64_t n = static_cast<int64_t>(got.size());
    if (bitwise) {
      EXPECT_EQ(equal, n) << what << ": not bitwise "
                          << (rounded ? "bf16_from_f32(fp32 kernel)" : "the fp32 kernel");
    }
    std::printf("[ bf16 ops ] %-4s %-44s %s max|d| %.2e max rel %.2e d/tol %.2f bitwise "
                "%lld/%lld%s\n", GetParam().name.c_str(), what.c_str(), rounded ? "bf16" : "f32 ",
                max_abs, max_rel, worst, static_cast<long long>(equal), static_cast<long long>(n),
                bitwise_required ? " (required)" : "");
  }
  Backend& be() { return *be_; }

  CpuBackend ref_;
  std::unique_ptr<Backend> be_;
  uint32_t seed_ = 1;
  bool bf16_product_ = false;  // the output checked is a bf16 x bf16 product's (not bitwise)
};

// (|op(A)| |op(B)|)_ij: what an fp32 summation-order difference in C_ij scales with.
double abs_product(bool ta, bool tb, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) {
    s += std::abs(static_cast<double>(ta ? A[k * lda + i] : A[i * lda + k])) *
         std::abs(static_cast<double>(tb ? B[j * ldb + k] : B[k * ldb + j]));
  }
  return s;
}

// ------------------------------------------------------------------------------- convert

// f32 -> bf16 by an independent route: the nearer of the two bf16 neighbours, ties to the
// even one (finite values that do not overflow).
uint16_t rne_reference(float f) {
  const uint32_t lo = bits(f) & 0xffff0000u;
  const double dlo = std::abs(static_cast<double>(f) - from_bits(lo));
  const double dhi = std::abs(static_cast<double>(from_bits(lo + 0x10000u)) - f);
  const uint16_t l = static_cast<uint16_t>(lo >> 16);
  return dlo < dhi ? l : dhi < dlo ? static_cast<uint16_t>(l + 1) : (l & 1 ? l + 1 : l);
}

TEST_P(BackendOps, ConvertRoundsToNearestEven) {
  // {f32 bits, expected bf16 bits}; 0 expected marks "must be NaN".
  const std::vector<std::pair<uint32_t, uint16_t>> cases = {
      {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80},  // 1 + 2^-8: tie, down to even
      {0x3f818000, 0x3f82}, {0x3f808001, 0x3f81},  // tie up to even; just above a tie
      {0x3f807fff, 0x3f80}, {0xbf808000, 0xbf80},  // just below; negative tie
      {0xbf818000, 0xbf82}, {0x00008000, 0x0000},  // negative tie up; subnormal tie to 0
      {0x00018000, 0x0002}, {0x80000000, 0x8000},  // subnormal tie up; -0 stays -0
      {0x7f7f7fff, 0x7f7f}, {0x7f7f8000, 0x7f80},  // largest finite; its tie rounds to inf
      {0x7f7fffff, 0x7f80}, {0xff7fffff, 0xff80},  // FLT_MAX overflows to +-inf
      {0x7f800000, 0x7f80}, {0xff800000, 0xff80},  // inf stays inf
      {0x7fc00000, 0}, {0x7f800001, 0}, {0xff800001, 0},  // NaN (incl. signalling) stays NaN
      {0x7fffffff, 0}, {0xffffffff, 0}};                   // rounding up must not wrap
  const int64_t n = static_cast<int64_t>(cases.size());
  std::vector<float> src;
  for (const auto& c : cases) src.push_back(from_bits(c.first));
  Tensor s = Tensor::empty(be(), {n}, kS, MemTag::workspace);
  Tensor d = Tensor::zeros(be(), {n}, kB, MemTag::workspace);
  be().copy_from_host(s.f32(), src.data(), s.bytes());
  be().convert(d.data(), s.data(), n);
  std::vector<uint16_t> out(n);
  be().copy_to_host(out.data(), d.bf16(), d.bytes());
  for (int64_t i = 0; i < n; ++i) {
    if (cases[i].second == 0 && (cases[i].first & 0x7fffffffu) > 0x7f800000u) {
      EXPECT_TRUE(std::isnan(f32_from_bf16(out[i])))
          << std::hex << cases[i].first << " -> " << out[i];
    } else {
      EXPECT_EQ(out[i], cases[i].second) << std::hex << cases[i].first;
    }
  }

  // 100003 random values (the parallel path), every 4th an exact tie, against rne_reference.
  const int64_t m = 100003;
  std::mt19937 rng(11);
  std::vector<float> v(m);
  for (int64_t i = 0; i < m; ++i) {
    uint32_t u = (rng() & 0x807fffffu) | ((64u + rng() % 128u) << 23);  // |x| in 2^[-63, 64]
    if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;
    v[i] = from_bits(u);
  }
  Tensor vs = Tensor::empty(be(), {m}, kS, MemTag::workspace);
  Tensor vd = Tensor::empty(be(), {m}, kB, MemTag::workspace);
  be().copy_from_host(vs.f32(), v.data(), vs.bytes());
  be().convert(vd.data(), vs.data(), m);
  std::vector<uint16_t> got(m);
  be().copy_to_host(got.data(), vd.bf16(), vd.bytes());
  int64_t wrong = 0;
  for (int64_t i = 0; i < m; ++i) wrong += got[i] != rne_reference(v[i]);
  EXPECT_EQ(wrong, 0) << "f32 -> bf16 values not rounded to nearest even";
  std::printf("[ bf16 ops ] %-4s convert f32->bf16: %lld special cases, %lld/%lld random RNE\n",
              GetParam().name.c_str(), static_cast<long long>(n),
              static_cast<long long>(m - wrong), static_cast<long long>(m));
}

TEST_P(BackendOps, ConvertWidensExactly) {
  // Every bf16 bit pattern -> f32 (exact: the pattern in the upper half) -> bf16 (unchanged).
  const int64_t n = 65536;
  std::vector<uint16_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = static_cast<uint16_t>(i);
  Tensor b = Tensor::empty(be(), {n}, kB, MemTag::workspace);
  Tensor f = Tensor::empty(be(), {n}, kS, MemTag::workspace);
  Tensor back = Tensor::empty(be(), {n}, kB, MemTag::workspace);
  be().copy_from_host(b.bf16(), all.data(), b.bytes());
  be().convert(f.data(), b.data(), n);
  be().convert(back.data(), f.data(), n);
  std::vector<uint32_t> wide(n);
  std::vector<uint16_t> round_trip(n);
  be().copy_to_host(wide.data(), f.f32(), f.bytes());
  be().copy_to_host(round_trip.data(), back.bf16(), back.bytes());
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    if ((i & 0x7fff) > 0x7f80) {  // NaN stays NaN both ways
      wrong += !std::isnan(from_bits(wide[i])) || !std::isnan(f32_from_bf16(round_trip[i]));
    } else {
      wrong += wide[i] != static_cast<uint32_t>(i) << 16 || round_trip[i] != all[i];
    }
  }
  EXPECT_EQ(wrong, 0);
  std::printf("[ bf16 ops ] %-4s convert bf16->f32->bf16: %lld/%lld patterns exact\n",
              GetParam().name.c_str(), static_cast<long long>(n - wrong),
              static_cast<long long>(n));
}

// ---------------------------------------------------------------------------------- BLAS

TEST_P(BackendOps, Gemm) {
  // Row strides padded, so C's gaps must come back untouched (tolerance 0). beta = 0 must
  // ignore C, NaN included (as BLAS). Output tolerance: u|y| where C is bf16, plus
  // gamma(K) (|alpha| |A||B| + |beta| |C0|) for another summation order (K = 768).
  const int64_t M = 37, N = 50, K = 768;
  struct Mode { const char* name; DType a, b, c; float alpha, beta; };
  const Mode modes[] = {{"bf16 C", kB, kB, kB, 1.0f, 0.0f},
                        {"bf16 C, alpha .5 beta 1", kB, kB, kB, 0.5f, 1.0f},
                        {"f32 C += (weight grad)", kB, kB, kS, 1.0f, 1.0f},
                        {"mixed A bf16 B f32 C f32", kB, kS, kS, 1.0f, 0.0f}};
  for (const Mode& mode : modes) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 2, tb = t & 1;
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
      const std::vector<float> a = values((ta ? K : M) * lda);
      const std::vector<float> b = values((tb ? N : K) * ldb, 0.05f);
      std::vector<float> c0 = values(M * ldc);
      for (int64_t i = 0; i < M * ldc; ++i) {
        if (mode.beta == 0 && i % ldc < N) c0[i] = kNaN;
      }
      Pair A = pair(a, mode.a), B = pair(b, mode.b), C = pair(c0, mode.c);
      ref_.gemm(ta, tb, M, N, K, mode.alpha, A.r.data(), lda, B.r.data(), ldb, mode.beta,
                C.r.data(), ldc);
      be().gemm(ta, tb, M, N, K, mode.alpha, A.t.data(), lda, B.t.data(), ldb, mode.beta,
                C.t.data(), ldc);
      const bool rounded = mode.c == kB;
      bf16_product_ = mode.a == kB && mode.b == kB;
      check(std::string("gemm ") + (ta ? "T" : "N") + (tb ? "T " : "N ") + mode.name, C.t, C.r,
            [&](int64_t i, double r) {
              if (i % ldc >= N) return 0.0;
              const double ab =
                  abs_product(ta, tb, K, a.data(), lda, b.data(), ldb, i / ldc, i % ldc);
              const double cb = mode.beta != 0 ? std::abs(mode.beta * c0[i]) : 0.0;
              return (rounded ? kU * std::abs(r) : 0.0) +
                     gamma(K) * (std::abs(mode.alpha) * ab + cb);
            });
    }
  }
}

TEST_P(BackendOps, GemmBatched) {
  // Attention-shaped: 6 heads of [T=16, hd=64] products, matrices padded within (ld) and
  // apart (stride); the gaps must stay as they were. Tolerance as for gemm, with K = 64.
  const int64_t M = 16, N = 16, K = 64, batch = 6;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 2, tb = t & 1;
    const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 3, ldc = N + 1;
    const int64_t sa = (ta ? K : M) * lda + 7, sb = (tb ? N : K) * ldb + 5, sc = M * ldc + 3;
    const std::vector<float> a = values(batch * sa), b = values(batch * sb, 0.5f);
    std::vector<float> c0 = values(batch * sc);
    for (int64_t i = 0; i < batch * sc; ++i) {
      if (i % sc < M * ldc && i % sc % ldc < N) c0[i] = kNaN;  // beta = 0: ignored
    }
    Pair A = pair(a, kB), B = pair(b, kB), C = pair(c0, kB);
    ref_.gemm_batched(ta, tb, M, N, K, 1.0f, A.r.data(), lda, sa, B.r.data(), ldb, sb, 0.0f,
                      C.r.data(), ldc, sc, batch);
    be().gemm_batched(ta, tb, M, N, K, 1.0f, A.t.data(), lda, sa, B.t.data(), ldb, sb, 0.0f,
                      C.t.data(), ldc, sc, batch);
    bf16_product_ = true;
    check(std::string("gemm_batched ") + (ta ? "T" : "N") + (tb ? "T" : "N") + " x6 strided",
          C.t, C.r, [&](int64_t i, double r) {
            const int64_t m = i / sc, e = i % sc;
            if (e >= M * ldc || e % ldc >= N) return 0.0;
            return kU * std::abs(r) + gamma(K) * abs_product(ta, tb, K, a.data() + m * sa, lda,
                                                              b.data() + m * sb, ldb, e / ldc,
                                                              e % ldc);
          });
  }
}

// ------------------------------------------------------------------------ elementwise ops

const Tol kRounded = [](int64_t, double r) { return kU * std::abs(r); };
const Tol kExact = [](int64_t, double) { return 0.0; };

// Linear's forward (Backend::linear_forward): the product, the bias and, for the MLP's first
// layer, GELU, with every operand of one dtype (the path a backend may fuse into its GEMM's
// epilogue) and with beta = 1 (the residual projections). Against the fp32 composition of
// gemm, add_bias and gelu_forward: y as gemm's tolerance (K = 768) with the bias's slack; the
// GELU output adds its one rounding and the pre-activation's error times |gelu'| <= 1.13.
TEST_P(BackendOps, LinearForwardWithBiasAndGelu) {
  const int64_t N = 37, K = 768, O = 96;
  for (DType dt : {kB, kS}) {
    for (bool gelu : {false, true}) {
      const float beta = gelu ? 0.0f : 1.0f;
      const std::vector<float> x = values(N * K), w = values(O * K, 0.05f), b = values(O);
      const std::vector<float> y0 = gelu ? nans(N * O) : values(N * O);
      Pair X = pair(x, dt), W = pair(w, dt), Bv = pair(b, dt), Y = pair(y0, dt),
           G = pair(nans(N * O), dt);
      ref_.linear_forward(Y.r.data(), X.r.data(), W.r.data(), Bv.r.data(), N, K, O, beta,
                          gelu ? G.r.data() : DevPtr{});
      be().linear_forward(Y.t.data(), X.t.data(), W.t.data(), Bv.t.data(), N, K, O, beta,
                          gelu ? G.t.data() : DevPtr{});
      auto y_slack = [&](int64_t i) {
        const int64_t r = i / O, c = i % O;
        return gamma(K) * abs_product(false, true, K, x.data(), K, w.data(), K, r, c) +
               kF * (std::abs(b[c]) + (beta != 0 ? std::abs(beta * y0[i]) : 0.0));
      };
      bf16_product_ = dt == kB;
      const std::string name = std::string("linear_forward ") + (dt == kB ? "bf16" : "f32 ") +
                               (gelu ? " +gelu" : " beta=1");
      check(name + " y", Y.t, Y.r, [&](int64_t i, double r) {
        return (dt == kB ? kU * std::abs(r) : 0.0) + y_slack(i);
      });
      if (gelu) {
        const std::vector<float> pre = to_host(Y.r);
        check(name + " gelu", G.t, G.r, [&](int64_t i, double r) {
          const double u = (dt == kB ? kU * std::abs(pre[i]) : 0.0) + y_slack(i);
          const double v = std::abs(pre[i]);
          return (dt == kB ? kU * std::abs(r) : 0.0) + 1.13 * u + kF * (1 + v + v * v * v);
        });
      }
    }
  }
}

TEST_P(BackendOps, AddAccumulateAddBias) {
  // One fp32 add per element: bitwise bf16_from_f32(fp32 result) on every backend.
  const int64_t N = 37, C = 64, n = N * C;
  Pair a = pair(values(n), kB), b = pair(values(n, 0.3f), kB), out = pair(nans(n), kB);
  ref_.add(out.r.data(), a.r.data(), b.r.data(), n);
  be().add(out.t.data(), a.t.data(), b.t.data(), n);
  check("add", out.t, out.r, kRounded, true);

  const std::vector<float> y0 = values(n, 2.0f);
  Pair y = pair(y0, kB), yf = pair(y0, kS), x = pair(values(n, 0.1f), kB);
  ref_.accumulate(y.r.data(), x.r.data(), n);
  be().accumulate(y.t.data(), x.t.data(), n);
  check("accumulate bf16 += bf16", y.t, y.r, kRounded, true);
  ref_.accumulate(yf.r.data(), x.r.data(), n);
  be().accumulate(yf.t.data(), x.t.data(), n);
  check("accumulate f32 += bf16", yf.t, yf.r, kExact, true);

  Pair o = pair(values(n), kB), bias = pair(values(C, 0.2f), kB);
  ref_.add_bias(o.r.data(), bias.r.data(), N, C);
  be().add_bias(o.t.data(), bias.t.data(), N, C);
  check("add_bias", o.t, o.r, kRounded, true);
}

TEST_P(BackendOps, Gelu) {
  // Forward: bitwise on the reference kernels; elsewhere u|y| + kF |x| (tanh's last bits,
  // times 0.5 x). Backward: u|dx| + kF |dout| (1 + |x| + |x|^3), the size of its terms.
  const int64_t n = 37 * 256;
  const std::vector<float> xv = values(n, 2.0f), gv = values(n);
  Pair x = pair(xv, kB), dout = pair(gv, kB), out = pair(nans(n), kB), dx = pair(nans(n), kB);
  ref_.gelu_forward(out.r.data(), x.r.data(), n);
  be().gelu_forward(out.t.data(), x.t.data(), n);
  check("gelu_forward", out.t, out.r,
        [&](int64_t i, double r) { return kU * std::abs(r) + kF * std::abs(xv[i]); });
  ref_.gelu_backward(dx.r.data(), x.r.data(), dout.r.data(), n);
  be().gelu_backward(dx.t.data(), x.t.data(), dout.t.data(), n);
  check("gelu_backward", dx.t, dx.r, [&](int64_t i, double r) {
    const double v = std::abs(xv[i]);
    return kU * std::abs(r) + kF * std::abs(gv[i]) * (1 + v + v * v * v);
  });
}

// ------------------------------------------------------------------- embedding, reductions

TEST_P(BackendOps, EmbeddingAndBias) {
  const int64_t N = 37, T = 16, C = 64, V = 97;
  std::vector<int32_t> tok(N);
  std::mt19937 rng(5);
  for (auto& t : tok) t = static_cast<int32_t>(rng() % V);
  tok[20] = tok[5];
  tok[36] = tok[5];  // repeated tokens: dwte rows summed
  Tensor tr = Tensor::empty(ref_, {N}, DType::i32, MemTag::workspace);
  Tensor tt = Tensor::empty(be(), {N}, DType::i32, MemTag::workspace);
  from_host(tr, tok);
  from_host(tt, tok);

  // Forward: one fp32 add per element, so bitwise on every backend.
  Pair wte = pair(values(V * C, 0.02f), kB), wpe = pair(values(T * C, 0.01f), kB),
       out = pair(nans(N * C), kB);
  ref_.embedding_forward(out.r.data(), tr.i32(), wte.r.data(), wpe.r.data(), N, T, C);
  be().embedding_forward(out.t.data(), tt.i32(), wte.t.data(), wpe.t.data(), N, T, C);
  check("embedding_forward", out.t, out.r, kRounded, true);

  // Backward into fp32 accumulators from a bf16 dout: same inputs, so fp32 precision only,
  // gamma(terms + 1) (|init| + sum |dout|) per element.
  const std::vector<float> gv = values(N * C), w0 = values(V * C), p0 = values(T * C);
  Pair dout = pair(gv, kB), dwte = pair(w0, kS), dwpe = pair(p0, kS);
  ref_.embedding_backward(dwte.r.f32(), dwpe.r.f32(), dout.r.data(), tr.i32(), N, T, C);
  be().embedding_backward(dwte.t.f32(), dwpe.t.f32(), dout.t.data(), tt.i32(), N, T, C);
  std::vector<double> sw(V * C, 0), sp(T * C, 0);
  std::vector<int64_t> cw(V, 0), cp(T, 0);
  for (int64_t i = 0; i < N; ++i) {
    ++cw[tok[i]];
    ++cp[i % T];
    for (int64_t c = 0; c < C; ++c) {
      sw[tok[i] * C + c] += std::abs(gv[i * C + c]);
      sp[(i % T) * C + c] += std::abs(gv[i * C + c]);
    }
  }
  check("embedding_backward dwte", dwte.t, dwte.r, [&](int64_t i, double) {
    return gamma(cw[i / C] + 1) * (std::abs(w0[i]) + sw[i]);
  });
  check("embedding_backward dwpe", dwpe.t, dwpe.r, [&](int64_t i, double) {
    return gamma(cp[i / C] + 1) * (std::abs(p0[i]) + sp[i]);
  });

  // bias_backward: column sums of a bf16 dout into fp32, gamma(N + 1) (|init| + sum |dout|).
  const std::vector<float> b0 = values(C);
  Pair db = pair(b0, kS);
  ref_.bias_backward(db.r.f32(), dout.r.data(), N, C);
  be().bias_backward(db.t.f32(), dout.t.data(), N, C);
  check("bias_backward db", db.t, db.r, [&](int64_t c, double) {
    double s = std::abs(b0[c]);
    for (int64_t i = 0; i < N; ++i) s += std::abs(gv[i * C + c]);
    return gamma(N + 1) * s;
  });
}

// ------------------------------------------------------------------------------ layernorm

TEST_P(BackendOps, LayerNorm) {
  // Forward: mean to gamma(C) max|x|, rstd to 4 gamma(C) rstd (fp32, same inputs); out to
  // u|y| + 4 gamma(C) (|w| rstd max|x| + |b|) (what those fp32 differences move it by).
  // Backward: dx = rstd (g w - mean(g w) - xhat mean(g w xhat)): u|dx| + 4 gamma(C) rstd
  // max|g w| (2 + max xhat^2); dw, db (fp32) gamma(N + 3) (|init| + sum of |terms|).
  const int64_t N = 37, C = 64;
  const float eps = 1e-5f;
  std::vector<float> xv = values(N * C);
  for (int64_t i = 0; i < N * C; ++i) {  // rows of different scale and offset
    const int64_t row = i / C;
    xv[i] = round_to_bf16(xv[i] * static_cast<float>(1 + row % 5) + static_cast<float>(row % 3));
  }
  const std::vector<float> wv = values(C, 0.1f, 1.0f), bv = values(C, 0.1f);
  std::vector<double> xmax(N, 0);
  for (int64_t i = 0; i < N * C; ++i) xmax[i / C] = std::max<double>(xmax[i / C], std::abs(xv[i]));

  for (const DType wdt : {kB, kS}) {  // all bf16; then x bf16 with f32 w, b, out (mixed)
    const std::string tag = wdt == kB ? "" : " (x bf16, w b out f32)";
    Pair x = pair(xv, kB), w = pair(wv, wdt), b = pair(bv, wdt), out = pair(nans(N * C), wdt);
    Pair mean = pair(nans(N), kS), rstd = pair(nans(N), kS);
    ref_.layernorm_forward(out.r.data(), mean.r.f32(), rstd.r.f32(), x.r.data(), w.r.data(),
                           b.r.data(), N, C, eps);
    be().layernorm_forward(out.t.data(), mean.t.f32(), rstd.t.f32(), x.t.data(), w.t.data(),
                           b.t.data(), N, C, eps);
    const std::vector<float> rs = to_host(rstd.r), mu = to_host(mean.r);
    check("layernorm_forward mean" + tag, mean.t, mean.r,
          [&](int64_t i, double) { return gamma(C) * xmax[i]; });
    check("layernorm_forward rstd" + tag, rstd.t, rstd.r,
          [&](int64_t, double r) { return 4 * gamma(C) * r; });
    check("layernorm_forward out" + tag, out.t, out.r, [&](int64_t i, double r) {
      return (wdt == kB ? kU * std::abs(r) : 0.0) +
             4 * gamma(C) * (std::abs(wv[i % C]) * rs[i / C] * xmax[i / C] + std::abs(bv[i % C]));
    });
    if (wdt == kS) break;

    // Backward, from the reference's mean and rstd (the same on both sides).
    const std::vector<float> gv = values(N * C), dw0 = values(C), db0 = values(C);
    Pair dout = pair(gv, kB), dx = pair(nans(N * C), kB), dw = pair(dw0, kS), db = pair(db0, kS);
    Tensor mt = put(be(), mu, kS), rt = put(be(), rs, kS);
    ref_.layernorm_backward(dx.r.data(), dw.r.f32(), db.r.f32(), dout.r.data(), x.r.data(),
                            w.r.data(), mean.r.f32(), rstd.r.f32(), N, C);
    be().layernorm_backward(dx.t.data(), dw.t.f32(), db.t.f32(), dout.t.data(), x.t.data(),
                            w.t.data(), mt.f32(), rt.f32(), N, C);
    std::vector<double> gmax(N, 0), hmax(N, 0), sdw(C, 0), sdb(C, 0);
    for (int64_t i = 0; i < N * C; ++i) {
      const double xhat = (xv[i] - mu[i / C]) * static_cast<double>(rs[i / C]);
      gmax[i / C] = std::max(gmax[i / C], std::abs(gv[i] * static_cast<double>(wv[i % C])));
      hmax[i / C] = std::max(hmax[i / C], std::abs(xhat));
      sdw[i % C] += std::abs(gv[i] * xhat);
      sdb[i % C] += std::abs(gv[i]);
    }
    check("layernorm_backward dx", dx.t, dx.r, [&](int64_t i, double r) {
      const int64_t row = i / C;
      return kU * std::abs(r) + 4 * gamma(C) * rs[row] * gmax[row] * (2 + hmax[row] * hmax[row]);
    });
    check("layernorm_backward dw", dw.t, dw.r,
          [&](int64_t c, double) { return gamma(N + 3) * (std::abs(dw0[c]) + sdw[c]); });
    check("layernorm_backward db", db.t, db.r,
          [&](int64_t c, double) { return gamma(N + 1) * (std::abs(db0[c]) + sdb[c]); });
  }
}

// ------------------------------------------------------------------------------ attention

TEST_P(BackendOps, CausalSoftmax) {
  // Forward: p = exp(.) / sum: u p + (gamma(T) + kF) p (sum order, exp's last bits); masked
  // entries must be exactly 0 (tolerance 0). Backward: ds = scale p (dp - sum_j p dp):
  // u|ds| + (gamma(T) + kF) |scale| p (|dp| + sum_j |p dp|). In place (p = s) and ds = dp
  // must give the out-of-place results bitwise.
  const int64_t rows = 6, T = 16, n = rows * T * T;
  const float scale = 0.125f;
  const std::vector<float> sv = values(n, 16.0f);
  Pair s = pair(sv, kB), p = pair(nans(n), kB), inplace = pair(sv, kB);
  ref_.causal_softmax_forward(p.r.data(), s.r.data(), rows, T, scale);
  be().causal_softmax_forward(p.t.data(), s.t.data(), rows, T, scale);
  be().causal_softmax_forward(inplace.t.data(), inplace.t.data(), rows, T, scale);
  const Tol fwd = [&](int64_t, double r) { return (kU + gamma(T) + kF) * std::abs(r); };
  check("causal_softmax_forward", p.t, p.r, fwd);
  check("causal_softmax_forward in place", inplace.t, p.r, fwd);
  EXPECT_EQ(to_host(inplace.t), to_host(p.t)) << "in place differs from out of place";

  std::vector<float> pv = to_host(p.r);  // the saved probabilities, as a bf16 activation
  for (float& v : pv) v = round_to_bf16(v);
  const std::vector<float> gv = values(n);
  std::vector<double> dot(rows * T, 0);
  for (int64_t i = 0; i < n; ++i) dot[i / T] += std::abs(static_cast<double>(pv[i]) * gv[i]);
  Pair pb = pair(pv, kB), dp = pair(gv, kB), ds = pair(nans(n), kB), alias = pair(gv, kB);
  ref_.causal_softmax_backward(ds.r.data(), pb.r.data(), dp.r.data(), rows, T, scale);
  be().causal_softmax_backward(ds.t.data(), pb.t.data(), dp.t.data(), rows, T, scale);
  be().causal_softmax_backward(alias.t.data(), pb.t.data(), alias.t.data(), rows, T, scale);
  const Tol bwd = [&](int64_t i, double r) {
    return kU * std::abs(r) + (gamma(T) + kF) * scale * pv[i] * (std::abs(gv[i]) + dot[i / T]);
  };
  check("causal_softmax_backward", ds.t, ds.r, bwd);
  check("causal_softmax_backward ds = dp", alias.t, ds.r, bwd);
  EXPECT_EQ(to_host(alias.t), to_host(ds.t)) << "ds aliasing dp differs";
}

INSTANTIATE_TEST_SUITE_P(, BackendOps, ::testing::ValuesIn(compiled_backends()),
                         [](const ::testing::TestParamInfo<BackendCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace nupipe::runtime
