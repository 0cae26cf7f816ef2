// test_pipeline_memory.cpp: the activation memory each pipeline stage really holds follows
// its schedule: under 1F1B stage s of p keeps min(p - s, m) microbatches, under GPipe all m,
// measured by the allocator against the layer cost descriptors; with activation recompute the
// peak is the cost model's (parallel/plan/cost_model.h) to the byte.
#include <gtest/gtest.h>
#include <mpi.h>

#include "parallel/plan/cost_model.h"
#include "parallel/pipeline/executor.h"
#include "parallel/pipeline/stage_layout.h"
#include "parallel/comm/topology.h"
#include "runtime/cpu/cpu_backend.h"

namespace nupipe::parallel {
namespace {

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Peak activation bytes of this rank over one training step of `kind` with m microbatches.
struct Measured {
  int64_t peak = 0, per_microbatch = 0;
  int stage = 0, stages = 1;
};

Measured measure(ScheduleKind kind, int microbatches, int blocks_per_stage = 1,
                 int recompute = 0) {
  const int p = world_size();
  ProcessGroups groups(p, 1);
  runtime::ModelConfig cfg;
  cfg.n_layer = p * blocks_per_stage;
  cfg.d_model = 16;
  cfg.n_head = 2;
  cfg.vocab_size = 32;
  cfg.seq_len = 8;
  const StageLayout layout = make_stage_layout({}, p, cfg.n_layer);  // blocks_per_stage each
  const runtime::StageSlice slice = layout.stages.at(groups.topology().stage());
  runtime::CpuBackend be;
  be.set_threads(1);
  runtime::StageModel model(be, cfg, slice, 1, recompute);
  model.params().initialize(1);
  const int micro = 2;
  Trace trace(false);
  PipelineExecutor exec(model, groups.pipeline(), kind, microbatches, micro, trace);
  be.memory().reset_peaks();
  const int64_t base = be.memory().current(runtime::MemTag::activations);
  exec.train_step(
      [&](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
        for (size_t i = 0; i < tok.size(); ++i) {
          tok[i] = static_cast<int32_t>((i * 7 + mb) % 32);
          tgt[i] = static_cast<int32_t>((i * 5 + mb + 1) % 32);
        }
      },
      1.0f / (microbatches * micro * cfg.seq_len));
  Measured m;
  m.peak = be.memory().peak(runtime::MemTag::activations) - base;
  m.stage = groups.topology().stage();
  m.stages = p;
  runtime::LayerCost cost;
  for (const auto& [name, c] : runtime::stage_costs(cfg, slice)) cost += c;
  // A stage after the first also keeps the activation it received (its first block's input).
  const int64_t per_token = cost.activation_bytes_per_token + (m.stage > 0 ? 4 * cfg.d_model : 0);
  m.per_microbatch = per_token * micro * cfg.seq_len;
  EXPECT_EQ(be.memory().current(runtime::MemTag::activations), base) << "step leaked activations";
  // The cost model's peak for this stage, schedule and recompute.
  const int in_flight = max_in_flight(make_schedule(kind, p, m.stage, microbatches));
  EXPECT_EQ(m.peak, stage_activation_peak(cfg, slice, m.stage > 0, recompute, in_flight,
                                          int64_t{micro} * cfg.seq_len))
      << "stage " << m.stage << " of " << p << ", m = " << microbatches << ", "
      << blocks_per_stage << " blocks, " << recompute << " recomputed";
  return m;
}

TEST(PipelineMemory, OneFOneBHoldsPMinusSMicrobatchesOnStageS) {
  for (int m : {1, 3, 8}) {
    const Measured r = measure(ScheduleKind::one_f_one_b, m);
    const int in_flight = std::min(r.stages - r.stage, m);
    EXPECT_EQ(r.peak, in_flight * r.per_microbatch)
        << "stage " << r.stage << " of " << r.stages << ", m = " << m;
  }
}

// Recompute of 0, 1 or all 3 blocks of every stage, under both schedules: the allocator's
// activation peak equals the cost model's, and recomputing lowers it.
TEST(PipelineMemory, RecomputePeakIsTheCostModels) {
  for (ScheduleKind kind : {ScheduleKind::one_f_one_b, ScheduleKind::gpipe}) {
    int64_t previous = INT64_MAX;
    for (int k : {0, 1, 3}) {
      const Measured r = measure(kind, 4, 3, k);
      EXPECT_LT(r.peak, previous) << k << " recomputed blocks did not lower the peak";
      previous = r.peak;
    }
  }
}

TEST(PipelineMemory, GPipeHoldsAllMicrobatches) {
  const int m = 5;
  const Measured r = measure(ScheduleKind::gpipe, m);
  EXPECT_EQ(r.peak, m * r.per_microbatch) << "stage " << r.stage;
}

}  // namespace
}  // namespace nupipe::parallel
