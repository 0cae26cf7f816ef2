// test_zero.cpp: ZeRO-1 against the replicated optimizer on the real data group: AdamW on
// shards equals AdamW on the whole buffer (decay flags on tensor pieces), the global norm
// equals a single-rank reference (tied table counted once), optimizer bytes are 1/dp (plus
// padding), and the data group's bytes per step are the ZeRO paper's 2 Psi (dp-1)/dp.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "optim/adamw.h"
#include "optim/zero.h"
#include "parallel/pipeline/executor.h"
#include "parallel/pipeline/stage_layout.h"
#include "parallel/comm/staged_communicator.h"
#include "parallel/comm/topology.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/layers/embedding.h"

namespace nupipe::optim {
namespace {

using runtime::CpuBackend;
using runtime::MemTag;

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// The (pipeline, data) layouts of this world size, each with a ragged stage split.
std::vector<std::pair<int, int>> layouts() {
  const int n = world_size();
  std::vector<std::pair<int, int>> out;
  for (int pp = 1; pp <= n; ++pp) {
    if (n % pp == 0) out.emplace_back(pp, n / pp);
  }
  return out;
}

// Odd width (63 = 3 heads of 21): every tensor's size is a multiple of 63, a block holds
// 63 x 769 parameters, and with vocab 52 and seq_len 8 no stage of pp=2 [1,3] divides 2 and the
// whole model does not divide 4, tied or not (asserted in OptimizerBytes...).
runtime::ModelConfig model_config(bool tied) {
  runtime::ModelConfig c;
  c.n_layer = 4;
  c.d_model = 63;
  c.n_head = 3;
  c.vocab_size = 52;
  c.seq_len = 8;
  c.tie_embeddings = tied;
  return c;
}

// Blocks per stage: uneven, first stage lightest (as the trainer's tests do).
parallel::StageLayersSpec split(int pp) {
  parallel::StageLayersSpec s;
  if (pp == 2) {
    s.kind = parallel::StageLayersSpec::Kind::explicit_list;
    s.layers = {1, 3};
  }
  return s;
}

constexpr int kMicro = 2, kMicrobatches = 3;

void fill_batch(int replica, int mb, const runtime::ModelConfig& c, std::vector<int32_t>& tok,
                std::vector<int32_t>& tgt) {
  for (size_t i = 0; i < tok.size(); ++i) {
    tok[i] = static_cast<int32_t>((i * 7 + 3 * mb + 11 * replica) % c.vocab_size);
    tgt[i] = static_cast<int32_t>((i * 5 + mb + 13 * replica + 1) % c.vocab_size);
  }
}

// Elements that differ. (Tests here report with EXPECT, never ASSERT, between collectives: a
// rank that returned early would leave the others waiting in the next collective.)
size_t mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

float dloss_of(const runtime::ModelConfig& c, int dp) {
  return 1.0f / static_cast<float>(kMicro * kMicrobatches * dp * c.seq_len);
}

// One rank's model slice, its optimizer and executor, on a backend of its own (so that the
// allocator's optimizer bytes are this optimizer's alone).
struct Rank {
  Rank(parallel::ProcessGroups& groups, const runtime::ModelConfig& cfg, int zero,
       float weight_decay = 0.1f)
      : slice(parallel::make_stage_layout(split(groups.topology().pipeline),
                                          groups.topology().pipeline, cfg.n_layer)
                  .stages.at(groups.topology().stage())) {
    be.set_threads(1);
    model = std::make_unique<runtime::StageModel>(be, cfg, slice,
                                                zero ? groups.topology().data : 1);
    model->params().initialize(7);
    AdamWOptions opt;
    opt.lr = 1e-2f;
    opt.weight_decay = weight_decay;
    optimizer = std::make_unique<ZeroOptimizer>(model->params(), groups, cfg.tie_embeddings,
                                                zero, opt);
    executor = std::make_unique<parallel::PipelineExecutor>(
        *model, groups.pipeline(), parallel::ScheduleKind::one_f_one_b, kMicrobatches, kMicro,
        trace);
  }
  void backward(parallel::ProcessGroups& groups) {
    const runtime::ModelConfig& c = model->config();
    const int replica = groups.topology().replica();
    model->params().zero_grads();
    executor->train_step(
        [&](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
          fill_batch(replica, mb, c, tok, tgt);
        },
        dloss_of(c, groups.topology().data));
  }

  CpuBackend be;
  runtime::StageSlice slice;
  parallel::Trace trace{false};
  std::unique_ptr<runtime::StageModel> model;
  std::unique_ptr<ZeroOptimizer> optimizer;
  std::unique_ptr<parallel::PipelineExecutor> executor;
};

TEST(Zero, ShardsPartitionThePaddedBuffer) {
  for (int64_t n : {0, 1, 5, 12, 13, 1000}) {
    for (int ranks : {1, 2, 3, 4, 7}) {
      const int64_t s = shard_numel(n, ranks);
      EXPECT_GE(s * ranks, n);
      EXPECT_LT(s * ranks - n, ranks);  // padding < dp
      for (int r = 0; r < ranks; ++r) {
        const Shard sh = shard_of(n, ranks, r);
        EXPECT_EQ(sh.begin, r * s);
        EXPECT_EQ(sh.numel(), s);
      }
    }
  }
}

// Per-rank arithmetic, no communication: AdamW run shard by shard over a padded store gives
// bit for bit the parameters of AdamW over the whole store, with shard boundaries falling
// inside tensors of different decay flags. (Ignoring the flags on pieces, or decaying the
// padding, changes the result.)
TEST(Zero, ShardedAdamWEqualsReplicatedAndHonoursDecayOnPieces) {
  using runtime::Init;
  const std::vector<runtime::TensorSpec> specs = {{"a.weight", {3, 3}, Init::normal, 1.0f, true},
                                                  {"a.bias", {5}, Init::normal, 1.0f, false},
                                                  {"b.weight", {7}, Init::normal, 1.0f, true},
                                                  {"ln.weight", {4}, Init::ones, 0.0f, false}};
  AdamWOptions opt;
  opt.lr = 0.05f;
  opt.weight_decay = 0.5f;
  for (int dp : {2, 3, 4, 7}) {
    CpuBackend be_ref, be_zero;
    runtime::ParamStore ref(be_ref, specs), zero(be_zero, specs, dp);
    ref.initialize(3);
    zero.initialize(3);
    ASSERT_NE(ref.numel() % dp, 0) << "dp " << dp << " must not divide 25";
    ASSERT_EQ(zero.padded_numel() % dp, 0);
    AdamW whole(ref, opt);
    std::vector<std::unique_ptr<AdamW>> shards;
    for (int r = 0; r < dp; ++r) {
      const Shard s = shard_of(zero.numel(), dp, r);
      shards.push_back(std::make_unique<AdamW>(zero, opt, s.begin, s.end));
    }
    for (int t = 0; t < 3; ++t) {
      std::vector<float> g(ref.numel());
      for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(1.7f * i + t) * (1 + i % 3);
      runtime::Tensor gr = ref.flat_grads().view(0, {ref.numel()});
      runtime::Tensor gz = zero.flat_grads().view(0, {zero.numel()});
      from_host(gr, g);
      from_host(gz, g);
      whole.step(opt.lr);
      for (auto& s : shards) s->step(opt.lr);
    }
    const std::vector<float> p_ref = runtime::to_host(ref.flat_params());
    const std::vector<float> p_zero = runtime::to_host(zero.flat_params());
    for (int64_t i = 0; i < ref.numel(); ++i) EXPECT_EQ(p_zero[i], p_ref[i]) << "dp " << dp << " i " << i;
    for (int64_t i = ref.numel(); i < zero.padded_numel(); ++i) EXPECT_EQ(p_zero[i], 0.0f);
    // The state is split, not copied: dp shards of ceil(n/dp) elements, m and v.
    EXPECT_EQ(be_zero.memory().current(MemTag::optimizer),
              2 * 4 * dp * shard_numel(ref.numel(), dp));
  }
}

// The allocator's optimizer bytes on this rank: zero = 1 holds 1/dp of zero = 0, plus its
// share of the padding; the parameter count of the stage does not divide dp.
TEST(Zero, OptimizerBytesAreOneOverDataDegreePlusPadding) {
  for (auto [pp, dp] : layouts()) {
    for (bool tied : {true, false}) {
      parallel::ProcessGroups groups(pp, dp);
      const runtime::ModelConfig cfg = model_config(tied);
      Rank replicated(groups, cfg, 0), sharded(groups, cfg, 1);
      const int64_t n = replicated.model->params().numel();
      const int64_t padded = sharded.model->params().padded_numel();
      if (dp > 1) {
        EXPECT_NE(n % dp, 0) << "pp " << pp << " dp " << dp << " tied " << tied
                             << ": choose model dims so the stage's parameters do not divide dp";
      }
      EXPECT_EQ(replicated.model->params().padded_numel(), n);  // zero = 0: no padding
      EXPECT_EQ(padded % dp, 0);
      EXPECT_LT(padded - n, dp);
      const int64_t bytes0 = replicated.be.memory().current(MemTag::optimizer);
      const int64_t bytes1 = sharded.be.memory().current(MemTag::optimizer);
      EXPECT_EQ(bytes0, 2 * 4 * n);
      EXPECT_EQ(bytes1 * dp, bytes0 + 2 * 4 * (padded - n)) << "pp " << pp << " dp " << dp;
      EXPECT_EQ(sharded.optimizer->shard().numel(), padded / dp);
    }
  }
}

// Sum of squares of the whole model's gradient for the same global batch, computed by one
// rank holding every layer: what the distributed norm must equal.
double reference_sum_squares(const runtime::ModelConfig& cfg, int dp) {
  CpuBackend be;
  be.set_threads(1);
  runtime::StageModel whole(be, cfg, runtime::StageSlice::whole(cfg));
  whole.params().initialize(7);
  whole.params().zero_grads();
  const int64_t n = int64_t{kMicro} * cfg.seq_len;
  std::vector<int32_t> tok(n), tgt(n);
  for (int r = 0; r < dp; ++r) {
    for (int mb = 0; mb < kMicrobatches; ++mb) {
      fill_batch(r, mb, cfg, tok, tgt);
      runtime::Tensor t = runtime::Tensor::empty(be, {n}, runtime::DType::i32, MemTag::activations);
      runtime::Tensor y = runtime::Tensor::empty(be, {n}, runtime::DType::i32, MemTag::activations);
      from_host(t, tok);
      from_host(y, tgt);
      whole.forward_backward(t, y, kMicro, dloss_of(cfg, dp));
    }
  }
  return be.sum_squares(whole.params().flat_grads().f32(), whole.params().numel());
}

// One step on both paths from the same weights and batch: the global norm equals the
// single-rank reference (the tied table summed over first and last stage and counted once),
// the reduce-scattered shard is the replicas' summed gradient, clip + AdamW on shards +
// all-gather give what replicated AdamW gives, and the tied copies stay identical.
TEST(Zero, StepMatchesReplicatedAndNormMatchesSingleRank) {
  for (auto [pp, dp] : layouts()) {
    for (bool tied : {true, false}) {
      parallel::ProcessGroups groups(pp, dp);
      const runtime::ModelConfig cfg = model_config(tied);
      Rank replicated(groups, cfg, 0), sharded(groups, cfg, 1);
      replicated.backward(groups);
      sharded.backward(groups);
      const double sq0 = replicated.optimizer->reduce_gradients();
      const double sq1 = sharded.optimizer->reduce_gradients();
      const double ref = reference_sum_squares(cfg, dp);
      {  // The reduce-scattered shard is the replicas' summed gradient of that range.
        const Shard sh = sharded.optimizer->shard();
        const std::vector<float> g0 = runtime::to_host(replicated.model->params().flat_grads());
        const std::vector<float> g1 = runtime::to_host(sharded.optimizer->grad_shard());
        double diff = 0.0, norm = 0.0;
        for (int64_t i = sh.begin; i < sh.end; ++i) {
          const double want = i < static_cast<int64_t>(g0.size()) ? g0[i] : 0.0;  // padding: 0
          diff += (g1[i - sh.begin] - want) * (g1[i - sh.begin] - want);
          norm += want * want;
        }
        EXPECT_LE(std::sqrt(diff), 1e-6 * std::sqrt(norm)) << "pp " << pp << " dp " << dp;
      }
      EXPECT_NEAR(sq1, ref, 1e-6 * ref) << "pp " << pp << " dp " << dp << " tied " << tied;
      EXPECT_NEAR(sq0, ref, 1e-6 * ref) << "pp " << pp << " dp " << dp << " tied " << tied;
      EXPECT_NEAR(sq0, sq1, 1e-6 * ref);
      // The update and the all-gather: the parameters every rank ends with must be what
      // replicated AdamW makes of the same summed gradient (the shards gathered here). (Against
      // the replicated path's own gradient they differ by summation-order rounding, which
      // AdamW's first step amplifies on near-zero gradients: zero_equivalence.sh compares the
      // paths' losses over 10 steps instead.)
      const Shard sh = sharded.optimizer->shard();
      const runtime::ParamStore& b = sharded.model->params();
      std::vector<float> g1(b.padded_numel());
      {
        const std::vector<float> mine = runtime::to_host(sharded.optimizer->grad_shard());
        groups.data().all_gather(mine.data(), g1.data(), sh.numel());
      }
      Rank expected(groups, cfg, 0);
      runtime::ParamStore& e = expected.model->params();
      g1.resize(e.numel());
      runtime::Tensor eg = e.flat_grads();
      from_host(eg, g1);
      const ClipOptions clip{0.5f * static_cast<float>(std::sqrt(ref))};  // clipping active
      EXPECT_LT(sharded.optimizer->update(1e-2f, std::sqrt(sq1), clip), 1.0f);
      sharded.optimizer->gather_params();
      EXPECT_LT(expected.optimizer->update(1e-2f, std::sqrt(sq1), clip), 1.0f);
      const std::vector<float> pe = runtime::to_host(e.flat_params());
      const std::vector<float> pb = runtime::to_host(b.flat_params());
      double diff = 0.0, norm = 0.0;
      for (int64_t i = 0; i < e.numel(); ++i) {
        diff += (pe[i] - pb[i]) * double(pe[i] - pb[i]);
        norm += pe[i] * double(pe[i]);
      }
      EXPECT_LE(std::sqrt(diff), 1e-7 * std::sqrt(norm)) << "pp " << pp << " dp " << dp;
      for (int64_t i = e.numel(); i < b.padded_numel(); ++i) EXPECT_EQ(pb[i], 0.0f);
      // Every replica holds the same parameters after the all-gather.
      std::vector<float> first = pb;
      groups.data().broadcast(first.data(), static_cast<int64_t>(first.size()), 0);
      EXPECT_EQ(mismatches(pb, first), 0u) << "replicas differ; pp " << pp << " dp " << dp;
      // The tied table's two copies (first and last stage) stay bit-identical.
      if (tied && pp > 1 && groups.embedding() != nullptr) {
        std::vector<float> wte = runtime::to_host(b.param(runtime::Embedding::kTokenTable));
        std::vector<float> other = wte;
        groups.embedding()->broadcast(other.data(), static_cast<int64_t>(other.size()), 0);
        EXPECT_EQ(mismatches(wte, other), 0u) << "tied copies differ; dp " << dp;
      }
    }
  }
}

// The device plane staged through host memory (what GPU ranks sharing a GPU use) is the
// direct MPI plane, to the bit: the same sums in the same order, through extra copies. Over
// every layout, tied and ZeRO-1: the gradient norm, the updated and gathered parameters and
// the data group's bytes.
TEST(Zero, StagedDevicePlaneIsBitwiseTheDirectOne) {
  for (auto [pp, dp] : layouts()) {
    const runtime::ModelConfig cfg = model_config(/*tied=*/true);
    parallel::ProcessGroups direct(pp, dp), staged(pp, dp);
    CpuBackend staging_device;
    staged.set_device_plane([&](parallel::MpiCommunicator& group, bool) {
      return std::make_unique<parallel::StagedCommunicator>(group, staging_device);
    });
    Rank a(direct, cfg, 1), b(staged, cfg, 1);
    a.backward(direct);
    b.backward(staged);
    const int64_t bytes_before = staged.data().bytes_sent();
    const double sq_a = a.optimizer->reduce_gradients();
    const double sq_b = b.optimizer->reduce_gradients();
    EXPECT_EQ(sq_a, sq_b) << "pp " << pp << " dp " << dp;
    const ClipOptions clip{1.0f};
    EXPECT_EQ(a.optimizer->update(1e-2f, std::sqrt(sq_a), clip),
              b.optimizer->update(1e-2f, std::sqrt(sq_b), clip));
    a.optimizer->gather_params();
    b.optimizer->gather_params();
    EXPECT_EQ(mismatches(runtime::to_host(a.model->params().flat_params()),
                         runtime::to_host(b.model->params().flat_params())),
              0u)
        << "pp " << pp << " dp " << dp;
    EXPECT_EQ(staged.data().bytes_sent() - bytes_before,
              static_cast<int64_t>(b.optimizer->formula_bytes_per_step()))
        << "pp " << pp << " dp " << dp;
    staged.reset_device_plane();
  }
}

// The data group's bytes for one step (gradient reduction, update, parameter gather), by the
// communicator's ring accounting, against the ZeRO paper's 2 Psi (dp - 1) / dp with Psi the
// bytes of the stage's flat gradient buffer (padded under ZeRO-1). Both paths move the same.
TEST(Zero, DataGroupBytesPerStepAreTwoPsiTimesDpMinusOneOverDp) {
  for (auto [pp, dp] : layouts()) {
    for (int zero : {0, 1}) {
      parallel::ProcessGroups groups(pp, dp);
      const runtime::ModelConfig cfg = model_config(true);
      Rank rank(groups, cfg, zero);
      rank.backward(groups);
      groups.data().reset_bytes_sent();
      const double sq = rank.optimizer->reduce_gradients();
      rank.optimizer->update(1e-2f, std::sqrt(sq), ClipOptions{1.0f});
      rank.optimizer->gather_params();
      const int64_t measured = groups.data().bytes_sent();
      const int64_t psi = rank.model->params().flat_grads().numel() * 4;
      EXPECT_EQ(psi, rank.optimizer->grad_buffer_bytes());
      if (zero == 1) {
        // Reduce-scatter + all-gather of dp equal blocks: exactly 2 Psi (dp-1)/dp.
        EXPECT_EQ(2 * psi * (dp - 1) % dp, 0);
        EXPECT_EQ(measured, 2 * psi * (dp - 1) / dp) << "pp " << pp << " dp " << dp;
      } else {
        // One all-reduce of the unpadded buffer: the same formula, rounded down by the
        // communicator's accounting when dp does not divide Psi.
        EXPECT_EQ(measured, 2 * psi * (dp - 1) / dp) << "pp " << pp << " dp " << dp;
      }
      EXPECT_NEAR(static_cast<double>(measured), rank.optimizer->formula_bytes_per_step(), 1.0);
    }
  }
}

}  // namespace
}  // namespace nupipe::optim
