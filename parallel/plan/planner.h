// planner.h: the automatic non-uniform stage split. Given the model, the parallel degrees, the
// schedule, ZeRO, the batch shape and a memory budget and throughput per stage (devices may
// differ), it finds the split of blocks over stages, and how many blocks of each stage
// recompute, that minimise the simulated step (the schedule's replay) with every stage within
// its budget (ties: the lower peak memory). A DP over (stage, blocks placed) keeps the Pareto
// fronts of (slowest stage, sum of stages, peak memory); the simulator chooses among the
// complete splits left. No MPI: it plans for any number of devices anywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "parallel/plan/cost_model.h"
#include "parallel/plan/simulator.h"
#include "runtime/model_config.h"

namespace nupipe::parallel {

// Measured seconds of one microbatch's passes on a device (`nupipe plan --calibrate`), used
// instead of FLOP rates where given. What each schedule's actions run (executor.cpp): the last
// stage's forward action is the head's whole forward, loss and backward; a fused backward is
// the blocks' and the embedding's gradients; in two passes B is the blocks' d(input) and W
// their and the embedding's weight gradients; a recomputing block reruns its forward in B.
struct PassTimes {
  double block_forward = 0, block_backward = 0;  // one block: F, and its backward fused
  double block_input = 0, block_weight = 0;      // one block: B and W
  double embedding_forward = 0, embedding_backward = 0;  // the embedding's F and gradient
  double head = 0;  // final norm, LM head and loss: forward and backward
  bool given() const { return block_forward > 0; }
};

struct Device {
  int64_t memory_bytes = 0;          // what a rank of this stage may hold
  double flops_per_s = 1e11;         // the throughput every layer computes at (no passes)
  // The step after the pipeline per parameter element of the stage's optimizer shard:
  // zeroing the gradients, their squared norm and AdamW (0: left out of the step).
  double step_elements_per_s = 0.0;
  PassTimes passes = {};             // measured pass times (none: from the FLOP rates)
};

enum class RecomputeChoice { none, full, automatic };
RecomputeChoice parse_recompute_choice(const std::string& text);  // "none" | "full" | "auto"

struct PlanInputs {
  runtime::ModelConfig model;   // the model that runs (train.loss_chunk applied)
  int pipeline = 1;
  CostInputs cost;              // data, zero, schedule, microbatches, micro_batch (recompute unused)
  std::vector<Device> devices;  // one per stage
  RecomputeChoice recompute = RecomputeChoice::none;
  // The simulator's network (0: free): activations and gradients between stages, and the
  // data-parallel gradient reduction (all-reduce, or ZeRO-1's reduce-scatter + all-gather:
  // the same 2 (dp-1)/dp of the stage's gradient bytes per rank).
  double p2p_bytes_per_s = 0.0;
  double net_bytes_per_s = 0.0;
};

struct StagePlan {
  int layers = 0;
  int recompute = 0;
  int64_t params = 0;            // parameter elements the stage holds
  StageMemory memory;            // bytes per rank by kind
  double time_s = 0.0;           // forward + backward of one microbatch
  bool fits = true;              // memory.total() <= its device's budget
};

struct Plan {
  std::string name;              // "auto", "uniform", "compare"
  ScheduleKind schedule = ScheduleKind::one_f_one_b;  // the schedule it was evaluated under
  std::vector<int> layers;       // blocks per stage
  std::vector<int> recompute;    // recomputed blocks per stage
  std::vector<StagePlan> stages;
  bool fits = true;
  int64_t peak_bytes = 0;        // the largest stage total
  double bottleneck_s = 0.0;     // the slowest stage's time per microbatch
  double reduce_s = 0.0;         // the slowest stage's data-parallel gradient reduction
  double optimizer_s = 0.0;      // the slowest stage's AdamW step (0 when not modelled)
  Simulation sim;                // step time and bubble from replaying the schedule
  // The search that found it: prefixes the DP extended by one stage, splits replayed, and
  // splits left unreplayed because their lower bound (Replay::lower_bound) was already longer
  // than the best step so far.
  int64_t extended = 0, replayed = 0, skipped = 0;
};

// Whether plan a is the better one: the shorter simulated step, then the lower peak (with
// `peak_first`: the lower peak, then the shorter step). Steps within a relative 1e-12 are
// equal: the same stage times replayed over another split round apart.
bool beats(const Plan& a, const Plan& b, bool peak_first = false);

// The plan of a given split and recompute counts (the recompute list empty: none).
Plan evaluate(const PlanInputs& in, const std::vector<int>& layers,
              const std::vector<int>& recompute = {});
// The optimal plan, or nothing when no split fits the budgets.
std::optional<Plan> plan_best(const PlanInputs& in);
// One plan per schedule, in the order of schedules() (the inputs' own schedule aside): each
// with its own optimal split and recompute (`layers` empty) or with the given split (and
// `recompute`; empty: the inputs' choice as plan_for_split makes it); nothing where it does not
// fit.
std::vector<std::optional<Plan>> plan_each_schedule(const PlanInputs& in,
                                                    const std::vector<int>& layers = {},
                                                    const std::vector<int>& recompute = {});
// parallel.schedule = "auto": the one of them with the shortest simulated step (ties: the
// lower peak); nothing when none fits.
std::optional<Plan> fastest_plan(const std::vector<std::optional<Plan>>& plans);
// The split with the lowest peak memory whatever the budgets (for "does not fit by how much").
Plan plan_lowest_peak(const PlanInputs& in);
// A given split with the recompute the inputs call for: none, full, or (auto) on each stage the
// fewest recomputed blocks that fit its budget.
Plan plan_for_split(const PlanInputs& in, const std::vector<int>& layers);
// The second-best fitting split (best of every split other than `best`'s, recompute chosen as
// for the best), to say what the choice beat; nothing when no other split fits.
std::optional<Plan> runner_up(const PlanInputs& in, const Plan& best);

// Valid block counts per stage (parallel/pipeline/stage_layout.h's rules): every entry >= 0,
// summing to n_layer, middle stages at least one block.
bool valid_split(const std::vector<int>& layers, int n_layer);
// The uniform split of make_stage_layout.
std::vector<int> uniform_split(int pipeline, int n_layer);

}  // namespace nupipe::parallel
