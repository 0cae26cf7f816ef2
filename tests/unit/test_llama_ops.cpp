// test_llama_ops.cpp: the llama family's backend ops (rmsnorm_*, rope, swiglu_*, and the fused
// attention with fewer key/value heads than query heads) on every compiled backend against the
// cpu backend's fp32 kernels, in fp32 and bf16: bitwise where the backend runs those kernels,
// within a tolerance per op elsewhere (cuda; skipped with the reason without a device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends.h"
#include "runtime/backend.h"
#include "runtime/cpu/cpu_backend.h"

namespace nupipe::runtime {
namespace {

using testing::BackendCase;

class LlamaOps : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    const std::string why = testing::unavailable_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why;
    be_ = GetParam().make();
  }
  std::vector<float> values(int64_t n, float sigma = 1.0f, float mean = 0.0f) {
    std::mt19937 rng(seed_++);
    std::normal_distribution<float> dist(mean, sigma);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = f32_from_bf16(bf16_from_f32(dist(rng)));  // exact in both dtypes
    return v;
  }
  static Tensor put(Backend& b, const std::vector<float>& v, DType dt) {
    Tensor t = Tensor::empty(b, {static_cast<int64_t>(v.size())}, dt, MemTag::workspace);
    from_host(t, v);
    return t;
  }
  // got within rel * |ref| + abs_scale * max|ref| of ref everywhere; bitwise on the backend
  // that runs the reference kernels (after rounding ref to got's dtype), unless a bf16 x bf16
  // product (oneDNN's on the cpu) feeds it.
  void check(const std::string& what, const Tensor& got_t, const Tensor& ref_t, double rel,
             double abs_scale, bool bf16_product = false) {
    const std::vector<float> got = to_host(got_t), ref = to_host(ref_t);
    ASSERT_EQ(got.size(), ref.size()) << what;
    double scale = 0, worst = 0;
    for (float r : ref) scale = std::max(scale, std::abs(static_cast<double>(r)));
    int64_t bad = 0, differ = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
      const double tol = rel * std::abs(ref[i]) + abs_scale * scale;
      if (!(d <= tol) && bad++ < 5) {
        ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", ref " << ref[i];
      }
      const float rounded = got_t.dtype() == DType::bf16 ? f32_from_bf16(bf16_from_f32(ref[i]))
                                                         : ref[i];
      differ += got[i] != rounded;
      worst = std::max(worst, d / std::max(tol, 1e-30));
    }
    if (GetParam().runs_reference_kernels && !bf16_product) {
      EXPECT_EQ(differ, 0) << what << ": not bitwise";
    }
    std::printf("[ llama ops ] %-4s %-36s d/tol %.3f differ %lld/%zu\n", GetParam().name.c_str(),
                what.c_str(), worst, static_cast<long long>(differ), got.size());
  }
  Backend& be() { return *be_; }
  CpuBackend ref_;
  std::unique_ptr<Backend> be_;
  uint32_t seed_ = 3;
};

// Per dtype: the relative bound of one output rounding, and an fp32 summation-order slack.
double rel_of(DType dt) { return dt == DType::bf16 ? 0x1p-8 : 0x1p-20; }

TEST_P(LlamaOps, RmsNorm) {
  const int64_t N = 37, C = 96;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const auto xv = values(N * C, 2.0f), wv = values(C, 0.1f, 1.0f), gv = values(N * C);
    const auto dw0 = values(C);
    Tensor xr = put(ref_, xv, DType::f32), wr = put(ref_, wv, DType::f32);
    Tensor xt = put(be(), xv, dt), wt = put(be(), wv, dt);
    Tensor outr = put(ref_, std::vector<float>(N * C), DType::f32), outt = put(be(), xv, dt);
    Tensor rr = put(ref_, std::vector<float>(N), DType::f32);
    Tensor rt = put(be(), std::vector<float>(N), DType::f32);
    ref_.rmsnorm_forward(outr.data(), rr.f32(), xr.data(), wr.data(), N, C, 1e-5f);
    be().rmsnorm_forward(outt.data(), rt.f32(), xt.data(), wt.data(), N, C, 1e-5f);
    check("rmsnorm_forward rstd", rt, rr, 1e-6, 0);
    check("rmsnorm_forward out", outt, outr, rel_of(dt), 1e-6);
    Tensor gr = put(ref_, gv, DType::f32), gt = put(be(), gv, dt);
    Tensor dxr = put(ref_, gv, DType::f32), dxt = put(be(), gv, dt);
    Tensor dwr = put(ref_, dw0, DType::f32), dwt = put(be(), dw0, DType::f32);
    Tensor rs = put(be(), to_host(rr), DType::f32);  // the same rstd on both sides
    ref_.rmsnorm_backward_input(dxr.data(), gr.data(), xr.data(), wr.data(), rr.f32(), N, C);
    be().rmsnorm_backward_input(dxt.data(), gt.data(), xt.data(), wt.data(), rs.f32(), N, C);
    ref_.rmsnorm_backward_weight(dwr.f32(), gr.data(), xr.data(), rr.f32(), N, C);
    be().rmsnorm_backward_weight(dwt.f32(), gt.data(), xt.data(), rs.f32(), N, C);
    check("rmsnorm_backward_input dx", dxt, dxr, rel_of(dt), 1e-5);
    check("rmsnorm_backward_weight dw", dwt, dwr, 1e-6, 1e-6);
  }
}

TEST_P(LlamaOps, RotaryAndItsInverse) {
  const int64_t T = 13, N = 2 * T, D = 16, heads = 5, ld = 3 * 16 * 2;  // 6 heads' width: one spare
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const auto xv = values(N * ld);
    for (bool inverse : {false, true}) {
      Tensor r = put(ref_, xv, DType::f32), t = put(be(), xv, dt);
      ref_.rope(r.data(), N, T, ld, heads, D, 10000.0f, inverse);
      be().rope(t.data(), N, T, ld, heads, D, 10000.0f, inverse);
      check(std::string("rope") + (inverse ? " inverse" : ""), t, r, rel_of(dt), 1e-6);
    }
  }
}

TEST_P(LlamaOps, SwiGlu) {
  const int64_t N = 29, F = 40;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const auto iv = values(N * 2 * F, 3.0f), gv = values(N * F);
    Tensor ir = put(ref_, iv, DType::f32), it = put(be(), iv, dt);
    Tensor outr = put(ref_, gv, DType::f32), outt = put(be(), gv, dt);
    ref_.swiglu_forward(outr.data(), ir.data(), N, F);
    be().swiglu_forward(outt.data(), it.data(), N, F);
    check("swiglu_forward", outt, outr, rel_of(dt) + 1e-6, 1e-7);
    Tensor gr = put(ref_, gv, DType::f32), gt = put(be(), gv, dt);
    Tensor dr = put(ref_, iv, DType::f32), dtt = put(be(), iv, dt);
    ref_.swiglu_backward(dr.data(), ir.data(), gr.data(), N, F);
    be().swiglu_backward(dtt.data(), it.data(), gt.data(), N, F);
    check("swiglu_backward", dtt, dr, rel_of(dt) + 1e-6, 1e-7);
  }
}

// The fused attention with 2 query heads per key/value head against the cpu kernels.
TEST_P(LlamaOps, GroupedQueryFusedAttention) {
  const int64_t B = 2, T = 70, H = 4, Hkv = 2, D = 16, W = (H + 2 * Hkv) * D, C = H * D;
  const float scale = 0.25f;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const auto qv = values(B * T * W), gv = values(B * T * C);
    Tensor qr = put(ref_, qv, DType::f32), qt = put(be(), qv, dt);
    Tensor outr = put(ref_, gv, DType::f32), outt = put(be(), gv, dt);
    Tensor lr = put(ref_, std::vector<float>(B * H * T), DType::f32);
    Tensor lt = put(be(), std::vector<float>(B * H * T), DType::f32);
    ref_.attention_forward(outr.data(), lr.f32(), qr.data(), B, T, H, Hkv, D, scale);
    be().attention_forward(outt.data(), lt.f32(), qt.data(), B, T, H, Hkv, D, scale);
    const bool bf = dt == DType::bf16;  // the score products are bf16 x bf16
    check("attention_forward (GQA) out", outt, outr, rel_of(dt), 1e-5, bf);
    check("attention_forward (GQA) lse", lt, lr, 1e-6, 1e-6, bf);
    // Backward from the reference's out (as dt stores it) and lse, on both sides.
    const std::vector<float> o = to_host(outt), lse = to_host(lr);
    Tensor o_r = put(ref_, o, DType::f32), o_t = put(be(), o, dt);
    Tensor l_t = put(be(), lse, DType::f32);
    Tensor gr = put(ref_, gv, DType::f32), gt = put(be(), gv, dt);
    Tensor dr = put(ref_, qv, DType::f32), dtt = put(be(), qv, dt);
    Tensor der = put(ref_, lse, DType::f32), det = put(be(), lse, DType::f32);
    ref_.attention_backward(dr.data(), der.f32(), gr.data(), qr.data(), o_r.data(), lr.f32(), B,
                            T, H, Hkv, D, scale);
    be().attention_backward(dtt.data(), det.f32(), gt.data(), qt.data(), o_t.data(), l_t.f32(),
                            B, T, H, Hkv, D, scale);
    check("attention_backward (GQA) dqkv", dtt, dr, rel_of(dt), 1e-4, bf);
  }
}

INSTANTIATE_TEST_SUITE_P(, LlamaOps, ::testing::ValuesIn(testing::compiled_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace nupipe::runtime
