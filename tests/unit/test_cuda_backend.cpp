// test_cuda_backend.cpp: CudaBackend beyond the per-kernel op suite (test_backend_ops.cpp):
// the caching allocator under Backend's accounting (current and peak bytes per tag equal the
// cpu backend's for the same Tensor allocations), the kernels that suite does not cover (cross
// entropy, sum_squares, all_finite, scale, AdamW, a long embedding backward), and a whole
// model's forward + backward - loss and every gradient - against the cpu backend in fp32 and
// bf16. Compiled only with NUPIPE_HAVE_CUDA; without a device each test is SKIPPED with the
// reason (never passed), except the one that checks the no-device refusal itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cuda/caching_allocator.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/error.h"
#include "runtime/stage_model.h"
#include "tests/unit/grad_check.h"

namespace nupipe::runtime {
namespace {

std::string no_device_reason() {
  std::string why;
  return CudaBackend::device_count(&why) > 0 ? std::string() : "no CUDA device: " + why;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = no_device_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    be_ = std::make_unique<CudaBackend>();
  }
  CudaBackend& be() { return *be_; }
  std::vector<float> values(int64_t n, float sigma, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
  }
  Tensor put(Backend& b, const std::vector<float>& v, DType dt = DType::f32) {
    Tensor t = Tensor::empty(b, {static_cast<int64_t>(v.size())}, dt, MemTag::workspace);
    from_host(t, v);
    return t;
  }
  Tensor put_i32(Backend& b, const std::vector<int32_t>& v) {
    Tensor t = Tensor::empty(b, {static_cast<int64_t>(v.size())}, DType::i32, MemTag::workspace);
    from_host(t, v);
    return t;
  }
  CpuBackend ref_;
  std::unique_ptr<CudaBackend> be_;
};

void expect_same_accounting(const Backend& a, const Backend& b, const std::string& when) {
  for (int t = 0; t < kNumTags; ++t) {
    const MemTag tag = static_cast<MemTag>(t);
    EXPECT_EQ(a.memory().current(tag), b.memory().current(tag)) << when << ", " << tag_name(tag);
    EXPECT_EQ(a.memory().peak(tag), b.memory().peak(tag)) << when << ", " << tag_name(tag);
  }
  EXPECT_EQ(a.memory().current_total(), b.memory().current_total()) << when;
  EXPECT_EQ(a.memory().peak_total(), b.memory().peak_total()) << when;
}

// ------------------------------------------------------------------------------ memory

TEST(CudaBackendNoDevice, RefusesWithAReason) {
  if (no_device_reason().empty()) GTEST_SKIP() << "a CUDA device is present: nothing to refuse";
  try {
    CudaBackend be;
    FAIL() << "constructed a CudaBackend without a device";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
  EXPECT_THROW(make_backend("cuda"), Error);
}

TEST_F(CudaBackendTest, NameAndBuildInfo) {
  EXPECT_EQ(make_backend("cuda")->name(), "cuda");
  EXPECT_NE(CudaBackend::build_info().find("sm_"), std::string::npos) << CudaBackend::build_info();
  EXPECT_FALSE(be().set_flush_denormals(true));
  EXPECT_TRUE(be().set_flush_denormals(false));
}

TEST_F(CudaBackendTest, CachingAllocatorAccountingMatchesCpu) {
  // The same Tensor allocations and frees on both backends, sizes across the size classes
  // (sub-512 B, exact classes, one past a class, above 1 MiB); accounting after every step.
  struct Step { int64_t numel; DType dt; MemTag tag; int free_index; };  // free_index >= 0: free
  const std::vector<Step> steps = {
      {1, DType::f32, MemTag::params, -1},          {127, DType::bf16, MemTag::grads, -1},
      {128, DType::f32, MemTag::activations, -1},   {129, DType::i32, MemTag::workspace, -1},
      {1 << 18, DType::f32, MemTag::optimizer, -1}, {(1 << 18) + 1, DType::bf16, MemTag::comm, -1},
      {0, DType::f32, MemTag::params, 2},           {3 << 19, DType::f32, MemTag::loss_workspace, -1},
      {0, DType::f32, MemTag::params, 4},           {1 << 18, DType::f32, MemTag::activations, -1},
      {0, DType::f32, MemTag::params, 7},           {3 << 19, DType::f32, MemTag::loss_workspace, -1},
      {0, DType::f32, MemTag::params, 0},           {0, DType::f32, MemTag::params, 5}};
  std::vector<Tensor> on_cpu, on_gpu;
  for (size_t k = 0; k < steps.size(); ++k) {
    const Step& s = steps[k];
    if (s.free_index >= 0) {
      on_cpu[s.free_index] = Tensor();
      on_gpu[s.free_index] = Tensor();
    } else {
      on_cpu.push_back(Tensor::zeros(ref_, {s.numel}, s.dt, s.tag));
      on_gpu.push_back(Tensor::zeros(be(), {s.numel}, s.dt, s.tag));
    }
    expect_same_accounting(be(), ref_, "after step " + std::to_string(k));
    EXPECT_GE(be().allocator().live_bytes(), be().memory().current_total());
  }
  // Step 9 re-allocated step 4's freed 1 MiB block from the cache; likewise a block freed
  // now is handed out again without a cudaMalloc.
  { Tensor first = Tensor::empty(be(), {5 << 18}, DType::f32, MemTag::workspace); }
  const int64_t mallocs = be().allocator().device_mallocs();
  { Tensor again = Tensor::empty(be(), {5 << 18}, DType::f32, MemTag::workspace); }
  EXPECT_EQ(be().allocator().device_mallocs(), mallocs) << "a cached block was not reused";
  EXPECT_EQ(cuda::CachingAllocator::size_class(1), 512u);
  EXPECT_EQ(cuda::CachingAllocator::size_class(513), 1024u);
  EXPECT_EQ(cuda::CachingAllocator::size_class((size_t{1} << 20) + 1), (size_t{5} << 18));
  // The memory works: a round trip through a reused block.
  Tensor t = Tensor::empty(be(), {3 << 19}, DType::f32, MemTag::workspace);
  std::vector<float> v = values(t.numel(), 1.0f, 3);
  from_host(t, v);
  EXPECT_EQ(to_host(t), v);
}

// -------------------------------------------------------------------- loss and reductions

TEST_F(CudaBackendTest, CrossEntropyMatchesCpu) {
  // Loss: both accumulate exp and the row losses in double on identical fp32 logits, so they
  // differ by double rounding of different sum orders (~V 2^-53 relative): 1e-10 relative.
  // dlogits = p dloss - [target] dloss in fp32: expf's last bits and the one-hot cancellation,
  // 2^-20 (|ref| + dloss). In place (dlogits = logits) must equal out of place bitwise.
  for (const int64_t V : {97, 5003}) {
    const int64_t N = 37;
    const float dloss = 1.0f / N;
    const std::vector<float> lv = values(N * V, 3.0f, 11);
    std::vector<int32_t> tg(N);
    for (int64_t i = 0; i < N; ++i) tg[i] = static_cast<int32_t>((i * 7919) % V);
    Tensor lr = put(ref_, lv), lg = put(be(), lv), inplace = put(be(), lv);
    Tensor dr = put(ref_, lv), dg = put(be(), lv);
    Tensor tr = put_i32(ref_, tg), tgp = put_i32(be(), tg);
    const double ref_loss = ref_.cross_entropy_forward_backward(dr.f32(), lr.f32(), tr.i32(), N, V,
                                                                dloss);
    const double loss = be().cross_entropy_forward_backward(dg.f32(), lg.f32(), tgp.i32(), N, V,
                                                            dloss);
    const double loss_in_place = be().cross_entropy_forward_backward(
        inplace.f32(), inplace.f32(), tgp.i32(), N, V, dloss);
    const double fwd = be().cross_entropy_forward(lg.f32(), tgp.i32(), N, V);
    EXPECT_NEAR(loss, ref_loss, 1e-10 * ref_loss) << "V " << V;
    EXPECT_EQ(loss_in_place, loss);
    EXPECT_EQ(fwd, loss) << "forward only must be the same reduction";
    const std::vector<float> d = to_host(dg), r = to_host(dr), ip = to_host(inplace);
    int64_t bad = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      bad += !(std::abs(d[i] - r[i]) <= 0x1p-20 * (std::abs(r[i]) + dloss));
    }
    EXPECT_EQ(bad, 0) << "V " << V << ": dlogits outside 2^-20 (|ref| + dloss)";
    EXPECT_EQ(ip, d) << "in place differs from out of place";
    std::printf("[ cuda     ] cross entropy V %lld: loss %.12f cpu %.12f\n",
                static_cast<long long>(V), loss, ref_loss);
  }
}

TEST_F(CudaBackendTest, ReductionsScaleAndFiniteness) {
  // sum_squares: each x^2 is exact in double (48-bit products), so only the order of the
  // double sum differs: n 2^-53 relative (1e-10 for n = 1e6).
  const int64_t n = 1000003;
  const std::vector<float> v = values(n, 2.0f, 7);
  Tensor x = put(be(), v);
  const double ref = ref_.sum_squares(v.data(), n), got = be().sum_squares(x.f32(), n);
  EXPECT_NEAR(got, ref, 1e-10 * ref);
  EXPECT_EQ(be().sum_squares(x.f32(), 0), 0.0);
  EXPECT_TRUE(be().all_finite(x.f32(), n));
  for (const int64_t at : {int64_t{0}, n / 2, n - 1}) {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
      Tensor y = put(be(), v);
      be().copy_from_host(y.f32() + at, &bad, sizeof bad);
      EXPECT_FALSE(be().all_finite(y.f32(), n)) << "non-finite at " << at;
    }
  }
  // scale: one fp32 multiply per element, bitwise.
  std::vector<float> s = v;
  ref_.scale(s.data(), 0.37f, n);
  be().scale(x.f32(), 0.37f, n);
  EXPECT_EQ(to_host(x), s);
}

TEST_F(CudaBackendTest, AdamWMatchesCpu) {
  // Three steps of the same fp32 formula; the two compilers may fuse multiply-adds
  // differently, a few fp32 roundings per quantity per step: m within 2^-19 max|g|, v within
  // 2^-19 max g^2, the weights within 2^-17 (|p| + 4 lr) (|m / sqrt v| stays O(1)).
  const int64_t n = 10007;
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  std::vector<float> p = values(n, 0.5f, 1), m(n, 0.0f), v(n, 0.0f);
  Tensor pg = put(be(), p), mg = put(be(), m), vg = put(be(), v), gg = put(be(), m);
  float gmax = 0;
  for (int step = 1; step <= 3; ++step) {
    const std::vector<float> g = values(n, 0.01f, 100 + step);
    for (float x : g) gmax = std::max(gmax, std::abs(x));
    from_host(gg, g);
    const float c1 = 1.0f - std::pow(b1, static_cast<float>(step));
    const float c2 = 1.0f - std::pow(b2, static_cast<float>(step));
    ref_.adamw(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, c1, c2);
    be().adamw(pg.f32(), gg.f32(), mg.f32(), vg.f32(), n, lr, b1, b2, eps, wd, c1, c2);
  }
  const std::vector<float> pgot = to_host(pg), mgot = to_host(mg), vgot = to_host(vg);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    bad += !(std::abs(mgot[i] - m[i]) <= 0x1p-19 * gmax);
    bad += !(std::abs(vgot[i] - v[i]) <= 0x1p-19 * gmax * gmax);
    bad += !(std::abs(pgot[i] - p[i]) <= 0x1p-17 * (std::abs(p[i]) + 4 * lr));
  }
  EXPECT_EQ(bad, 0);
}

TEST_F(CudaBackendTest, EmbeddingBackwardIsTheCpuOrderBitwise) {
  // 4096 tokens over 50 rows (long runs of repeats), C = 72 (not a multiple of a warp): the
  // sorted scatter adds each row's gradients in position order from the row's current value,
  // as the cpu kernel does, so dwte and dwpe equal the cpu's bitwise; and twice the same.
  const int64_t N = 4096, T = 1024, C = 72, V = 50;
  std::vector<int32_t> tok(N);
  std::mt19937 rng(9);
  for (auto& t : tok) t = static_cast<int32_t>(rng() % V);
  for (const DType dt : {DType::f32, DType::bf16}) {
    std::vector<float> gv = values(N * C, 1.0f, 21);
    for (float& x : gv) x = round_to_bf16(x);
    const std::vector<float> w0 = values(V * C, 1.0f, 22), p0 = values(T * C, 1.0f, 23);
    Tensor dr = put(ref_, gv), dg = put(be(), gv, dt);
    Tensor tr = put_i32(ref_, tok), tg = put_i32(be(), tok);
    Tensor wr = put(ref_, w0), pr = put(ref_, p0), wg = put(be(), w0), pg = put(be(), p0);
    Tensor wg2 = put(be(), w0), pg2 = put(be(), p0);
    ref_.embedding_backward(wr.f32(), pr.f32(), dr.data(), tr.i32(), N, T, C);
    be().embedding_backward(wg.f32(), pg.f32(), dg.data(), tg.i32(), N, T, C);
    be().embedding_backward(wg2.f32(), pg2.f32(), dg.data(), tg.i32(), N, T, C);
    EXPECT_EQ(to_host(wg), to_host(wr)) << dtype_name(dt) << " dwte";
    EXPECT_EQ(to_host(pg), to_host(pr)) << dtype_name(dt) << " dwpe";
    EXPECT_EQ(to_host(wg2), to_host(wg)) << "not deterministic";
  }
}

// ------------------------------------------------------------------------- whole model

struct ModelRun {
  double loss = 0.0;
  std::vector<float> grads;
};

ModelConfig model_config(DType dtype) {  // test_precision.cpp's model
  ModelConfig c;
  c.n_layer = 3;
  c.d_model = 64;
  c.n_head = 4;
  c.vocab_size = 97;
  c.seq_len = 16;
  c.init_std = 0.1f;
  c.dtype = dtype;
  return c;
}

// One forward + backward of a 3-sequence batch on `be`, weights the fp32 initial values
// rounded to bf16 (identical on every backend and precision); accounting checked against the
// cpu backend's run by the caller.
ModelRun run_model(Backend& be, DType dtype) {
  const ModelConfig cfg = model_config(dtype);
  StageModel model(be, cfg, StageSlice::whole(cfg));
  std::vector<float> w = model.params().initial_values(3, 0, model.params().padded_numel());
  for (float& x : w) x = round_to_bf16(x);
  Tensor flat = model.params().flat_params();
  from_host(flat, w);
  const int64_t B = 3, N = B * cfg.seq_len;
  const testing::Batch batch = testing::fixed_batch(be, N, cfg.vocab_size);
  const Tensor& t = batch.tokens;
  const Tensor& g = batch.targets;
  model.params().zero_grads();
  StageModel::Pass pass;
  model.forward(pass, t, B);
  Tensor dhidden;
  ModelRun r;
  r.loss = model.head_forward_backward(pass, g, 1.0f / N, dhidden) / N;
  model.backward(pass, dhidden);
  r.grads = to_host(model.params().flat_grads());
  return r;
}

struct Diff {
  double loss_rel, grad_rel, cosine;
};
Diff compare(const ModelRun& got, const ModelRun& ref) {
  double diff = 0, norm = 0, ng = 0, dot = 0;
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const double a = got.grads[i], b = ref.grads[i];
    diff += (a - b) * (a - b);
    norm += b * b;
    ng += a * a;
    dot += a * b;
  }
  return {std::abs(got.loss - ref.loss) / ref.loss, std::sqrt(diff / norm),
          dot / std::sqrt(norm * ng)};
}

// fp32: the same formulas in fp32 on both backends, differing in summation orders (cuBLAS vs
// OpenBLAS blocking, tree vs sequential row sums) and tanhf/expf's last bits: ~1e-6 relative
// per op, compounded through 3 blocks and back, stays below 1e-5 on the loss and 1e-4 on the
// gradient (norm-relative), cosine > 1 - 1e-6. A wrong mask, transposition, offset or a missed
// accumulation is an O(1e-1..1) error.
// bf16: both round each output once; an fp32 difference near a rounding boundary flips one
// bf16 ulp (2^-8), and such flips propagate like bf16's own rounding noise. So the two bf16
// runs differ by at most about what bf16 differs from fp32 (test_precision.cpp: measured 2e-4
// loss, 9.5e-3 gradient): bounds 2e-3 loss, 3e-2 gradient, cosine > 0.999; and the CUDA bf16
// run must track the fp32 reference within test_precision's own bounds (1e-2, 5e-2, 0.99).
TEST_F(CudaBackendTest, WholeModelForwardBackwardMatchesCpu) {
  ref_.set_threads(1);
  const ModelRun f_cpu = run_model(ref_, DType::f32);
  const ModelRun f_gpu = run_model(be(), DType::f32);
  const ModelRun b_cpu = run_model(ref_, DType::bf16);
  const ModelRun b_gpu = run_model(be(), DType::bf16);
  expect_same_accounting(be(), ref_, "after the model runs");
  ASSERT_EQ(f_gpu.grads.size(), f_cpu.grads.size());
  EXPECT_GT(f_cpu.loss, 4.0);

  const Diff f = compare(f_gpu, f_cpu), b = compare(b_gpu, b_cpu), bf = compare(b_gpu, f_cpu);
  std::printf("[ cuda     ] fp32 vs cpu fp32: loss rel %.2e grad rel %.2e cosine %.8f\n",
              f.loss_rel, f.grad_rel, f.cosine);
  std::printf("[ cuda     ] bf16 vs cpu bf16: loss rel %.2e grad rel %.2e cosine %.8f\n",
              b.loss_rel, b.grad_rel, b.cosine);
  std::printf("[ cuda     ] bf16 vs cpu fp32: loss rel %.2e grad rel %.2e cosine %.8f "
              "(GEMMs on the cuBLAS fallback: %lld)\n",
              bf.loss_rel, bf.grad_rel, bf.cosine, static_cast<long long>(be().gemm_fallbacks()));
  EXPECT_LT(f.loss_rel, 1e-5);
  EXPECT_LT(f.grad_rel, 1e-4);
  EXPECT_GT(f.cosine, 1 - 1e-6);
  EXPECT_LT(b.loss_rel, 2e-3);
  EXPECT_LT(b.grad_rel, 3e-2);
  EXPECT_GT(b.cosine, 0.999);
  EXPECT_LT(bf.loss_rel, 1e-2);
  EXPECT_LT(bf.grad_rel, 5e-2);
  EXPECT_GT(bf.cosine, 0.99);
}

}  // namespace
}  // namespace nupipe::runtime
