// test_fused_attention.cpp: Backend::attention_forward/backward on every compiled backend
// against an independent float64 evaluation of softmax(scale q k^T, causal) v and its
// gradients, in fp32 and with bf16 operands; determinism; and the attention layer, fused
// against unfused, on the same weights (outputs, input and parameter gradients).
//
// Tolerance, per element: a first-order bound on fp32 evaluation error. Each score carries
// at most gamma(D) * scale * sum|q_d k_d| of rounding, which the exponential turns into the
// same relative error of its probability; every output is a sum of at most T + D products of
// such terms. So |got - ref| <= 4 gamma(T + D) * A, where A is the output's formula evaluated
// on absolute values with each probability weighted by (1 + scale * sum|q k|) (gamma(n) =
// n 2^-24, the factor 4 covering the exp/log and the two orders two implementations may sum
// in). A bf16 output adds its one rounding, 2^-8 |ref|. A wrong mask, a missed rescale or a
// tile boundary error is off by O(|ref|), orders of magnitude above this.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends.h"
#include "runtime/layers/attention.h"
#include "runtime/param_store.h"

namespace nupipe::runtime {
namespace {

using testing::BackendCase;

double gamma(int64_t n) { return static_cast<double>(n) * 0x1p-24; }

struct Shape {
  int64_t B, T, H, D;
};

// softmax(scale q k^T) v and its gradients in double, with the error scale A of each output.
struct Reference {
  std::vector<double> out, out_abs, lse;  // forward
  std::vector<double> dqkv, dqkv_abs;      // backward
};

Reference reference(const Shape& s, const std::vector<float>& qkv,
                    const std::vector<float>& out_in, const std::vector<float>& dout) {
  const int64_t C = s.H * s.D, C3 = 3 * C, T = s.T, D = s.D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Reference r;
  r.out.assign(s.B * T * C, 0);
  r.out_abs.assign(s.B * T * C, 0);
  r.lse.assign(s.B * s.H * T, 0);
  r.dqkv.assign(s.B * T * C3, 0);
  r.dqkv_abs.assign(s.B * T * C3, 0);
  auto at = [&](int64_t b, int64_t t, int part, int64_t h) {
    return (b * T + t) * C3 + part * C + h * D;
  };
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> sc(i + 1), sa(i + 1), p(i + 1);
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0, dabs = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot += double(qkv[at(b, i, 0, h) + d]) * qkv[at(b, j, 1, h) + d];
            dabs += std::abs(double(qkv[at(b, i, 0, h) + d]) * qkv[at(b, j, 1, h) + d]);
          }
          sc[j] = scale * dot;
          sa[j] = 1.0 + scale * dabs;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(sc[j] - mx);
        for (int64_t j = 0; j <= i; ++j) p[j] = std::exp(sc[j] - mx) / sum;
        r.lse[(b * s.H + h) * T + i] = mx + std::log(sum);
        const int64_t o = (b * T + i) * C + h * D;
        for (int64_t d = 0; d < D; ++d) {
          for (int64_t j = 0; j <= i; ++j) {
            r.out[o + d] += p[j] * qkv[at(b, j, 2, h) + d];
            r.out_abs[o + d] += p[j] * sa[j] * std::abs(double(qkv[at(b, j, 2, h) + d]));
          }
        }
        // Backward, from the out the kernel is given (out_in) for delta.
        double delta = 0, delta_abs = 0;
        for (int64_t d = 0; d < D; ++d) {
          delta += double(dout[o + d]) * out_in[o + d];
          delta_abs += std::abs(double(dout[o + d]) * out_in[o + d]);
        }
        for (int64_t j = 0; j <= i; ++j) {
          double dp = 0, dp_abs = 0;
          for (int64_t d = 0; d < D; ++d) {
            dp += double(dout[o + d]) * qkv[at(b, j, 2, h) + d];
            dp_abs += std::abs(double(dout[o + d]) * qkv[at(b, j, 2, h) + d]);
          }
          const double ds = scale * p[j] * (dp - delta);
          const double ds_abs =
              scale * p[j] * sa[j] * (std::abs(dp) + dp_abs + std::abs(delta) + delta_abs);
          for (int64_t d = 0; d < D; ++d) {
            const double q = qkv[at(b, i, 0, h) + d], k = qkv[at(b, j, 1, h) + d];
            const double g = dout[o + d];
            r.dqkv[at(b, i, 0, h) + d] += ds * k;
            r.dqkv_abs[at(b, i, 0, h) + d] += ds_abs * std::abs(k);
            r.dqkv[at(b, j, 1, h) + d] += ds * q;
            r.dqkv_abs[at(b, j, 1, h) + d] += ds_abs * std::abs(q);
            r.dqkv[at(b, j, 2, h) + d] += p[j] * g;
            r.dqkv_abs[at(b, j, 2, h) + d] += p[j] * sa[j] * std::abs(g);
          }
        }
      }
    }
  }
  return r;
}

class FusedAttention : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    const std::string why = testing::unavailable_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why;
    be_ = GetParam().make();
  }
  std::vector<float> values(int64_t n, float sigma) {
    std::mt19937 rng(seed_++);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = round_to_bf16(dist(rng));  // representable in either dtype
    return v;
  }
  Tensor put(const std::vector<float>& v, DType dt) {
    Tensor t = Tensor::empty(*be_, {static_cast<int64_t>(v.size())}, dt, MemTag::workspace);
    from_host(t, v);
    return t;
  }
  // Checks got against ref within 4 gamma(n) * abs (+ bf16 rounding); returns the worst ratio.
  double check(const std::string& what, const std::vector<float>& got,
               const std::vector<double>& ref, const std::vector<double>& abs, int64_t n,
               bool bf16) {
    EXPECT_EQ(got.size(), ref.size()) << what;
    double worst = 0, max_abs = 0;
    int bad = 0;
    for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
      const double tol =
          4 * gamma(n) * abs[i] + (bf16 ? 0x1p-8 * std::abs(ref[i]) : 0.0) + 1e-30;
      const double d = std::abs(got[i] - ref[i]);
      if (!(d <= tol) && bad++ < 5) {
        ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", ref " << ref[i]
                      << ", tol " << tol;
      }
      worst = std::max(worst, d / tol);
      max_abs = std::max(max_abs, d);
    }
    std::printf("[ attention ] %-4s %-40s max|d| %.2e d/tol %.3f\n", GetParam().name.c_str(),
                what.c_str(), max_abs, worst);
    return worst;
  }

  void run(const Shape& s, DType dt) {
    const int64_t C = s.H * s.D, N = s.B * s.T;
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.D));
    const std::vector<float> qkv = values(N * 3 * C, 1.0f), dout = values(N * C, 1.0f);
    const std::string tag = std::string(dt == DType::bf16 ? "bf16" : "f32") + " B" +
                            std::to_string(s.B) + " T" + std::to_string(s.T) + " H" +
                            std::to_string(s.H) + " D" + std::to_string(s.D);
    // Forward.
    Tensor tq = put(qkv, dt);
    Tensor tout = Tensor::empty(*be_, {N * C}, dt, MemTag::workspace);
    Tensor tlse = Tensor::empty(*be_, {s.B * s.H * s.T}, DType::f32, MemTag::workspace);
    be_->attention_forward(tout.data(), tlse.f32(), tq.data(), s.B, s.T, s.H, s.H, s.D, scale);
    const std::vector<float> out = to_host(tout);
    // Backward from the forward's own out (rounded as the dtype stores it) and lse.
    const Reference r = reference(s, qkv, out, dout);
    check("forward out " + tag, out, r.out, r.out_abs, s.T + s.D, dt == DType::bf16);
    std::vector<double> lse_abs(r.lse.size(), 0);
    for (size_t i = 0; i < lse_abs.size(); ++i) lse_abs[i] = 4 * (std::abs(r.lse[i]) + s.D);
    check("forward lse " + tag, to_host(tlse), r.lse, lse_abs, s.T + s.D, false);
    Tensor tg = put(dout, dt);
    Tensor tdq = put(std::vector<float>(N * 3 * C, 7.0f), dt);  // every element overwritten
    Tensor tdelta = Tensor::empty(*be_, {s.B * s.H * s.T}, DType::f32, MemTag::workspace);
    be_->attention_backward(tdq.data(), tdelta.f32(), tg.data(), tq.data(), tout.data(),
                            tlse.f32(), s.B, s.T, s.H, s.H, s.D, scale);
    const std::vector<float> dqkv = to_host(tdq);
    check("backward dqkv " + tag, dqkv, r.dqkv, r.dqkv_abs, 2 * (s.T + s.D), dt == DType::bf16);
    // Deterministic: the same call again gives the same bits.
    be_->attention_backward(tdq.data(), tdelta.f32(), tg.data(), tq.data(), tout.data(),
                            tlse.f32(), s.B, s.T, s.H, s.H, s.D, scale);
    const std::vector<float> again = to_host(tdq);
    int64_t differ = 0;
    for (size_t i = 0; i < again.size(); ++i) differ += std::memcmp(&again[i], &dqkv[i], 4) != 0;
    EXPECT_EQ(differ, 0) << "attention_backward is not deterministic: " << tag;
  }

  std::unique_ptr<Backend> be_;
  uint32_t seed_ = 11;
};

// Shapes across the cuda kernels' boundaries: 64 query rows per block (T = 70: two blocks,
// the second partial), key tiles of 4096 / D rows (D = 64: two tiles at T = 70; D = 16: one;
// D = 128: 32-row tiles, smaller than a block, three blocks at T = 130), several sequences and
// heads.
TEST_P(FusedAttention, MatchesFloat64Reference) {
  for (const Shape& s : {Shape{2, 70, 2, 16}, Shape{1, 70, 1, 64}, Shape{3, 17, 4, 32},
                         Shape{1, 130, 1, 128}}) {
    run(s, DType::f32);
    run(s, DType::bf16);
  }
}

INSTANTIATE_TEST_SUITE_P(, FusedAttention, ::testing::ValuesIn(testing::compiled_backends()),
                         [](const ::testing::TestParamInfo<BackendCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace nupipe::runtime
