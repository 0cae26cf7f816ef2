// test_simulator.cpp: the schedule replay the planner scores splits by: its step and bubble
// on cases with known answers, bitwise the same as a plain event replay of the stages' action
// lists on random stage times, and the lower bound the planner prunes with never above it.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "parallel/pipeline/schedule.h"
#include "parallel/plan/simulator.h"

namespace nupipe::parallel {
namespace {

TEST(Simulator, BalancedOneFOneBHasTheTextbookBubble) {
  for (int p : {1, 2, 4}) {
    for (int m : {1, 4, 8}) {
      const Simulation s = simulate(ScheduleKind::one_f_one_b,
                                    std::vector<StageTimes>(p, {1.0, 2.0}), m);
      EXPECT_DOUBLE_EQ(s.step_s, 3.0 * (m + p - 1)) << p << " stages, " << m << " microbatches";
      EXPECT_NEAR(s.bubble_fraction, (p - 1.0) / (m + p - 1.0), 1e-12);
      const Simulation g = simulate(ScheduleKind::gpipe, std::vector<StageTimes>(p, {1.0, 2.0}), m);
      EXPECT_DOUBLE_EQ(g.step_s, 3.0 * (m + p - 1));
    }
  }
}

TEST(Simulator, TheSlowestStageSetsTheSteadyState) {
  // Stage 1 takes twice as long: in steady state the pipeline runs at its pace.
  const Simulation s = simulate(ScheduleKind::one_f_one_b, {{1, 2}, {2, 4}, {1, 2}}, 16);
  EXPECT_GT(s.step_s, 16 * 6.0);
  EXPECT_LT(s.step_s, 16 * 6.0 + 2 * 3.0 + 1e-9 + 6.0);
  const Simulation with_p2p = simulate(ScheduleKind::one_f_one_b, {{1, 2}, {1, 2}}, 4, 0.5);
  EXPECT_GT(with_p2p.step_s, simulate(ScheduleKind::one_f_one_b, {{1, 2}, {1, 2}}, 4).step_s);
}

// With F, B and W of equal length, ZB-H1 and ZB-H2 reach the shortest step any schedule can:
// the last stage waits p - 1 forwards for its first input, then computes 3m passes without a
// gap; 1F1B's idle time per stage is three times as long (its backwards fused, 2 units each).
TEST(Simulator, ZeroBubbleSchedulesReachTheLowerBoundWithEqualPasses) {
  for (int p = 1; p <= 8; ++p) {
    for (int m : {p, 2 * p, 3 * p}) {
      SCOPED_TRACE("p=" + std::to_string(p) + " m=" + std::to_string(m));
      const std::vector<StageTimes> unit(p, {1.0, 2.0, 1.0});
      const Simulation base = simulate(ScheduleKind::one_f_one_b, unit, m);
      EXPECT_DOUBLE_EQ(base.step_s, 3.0 * (m + p - 1));
      for (ScheduleKind kind : {ScheduleKind::zb_h1, ScheduleKind::zb_h2}) {
        const Simulation zb = simulate(kind, unit, m);
        EXPECT_DOUBLE_EQ(zb.step_s, 3.0 * m + p - 1) << schedule_name(kind);
        EXPECT_LE(zb.bubble_fraction, base.bubble_fraction * 0.5 + 1e-12) << schedule_name(kind);
      }
    }
  }
  // B half as long again as F: ZB-H2's extra warm-up forwards shorten the step further.
  for (int p : {2, 4, 8}) {
    const std::vector<StageTimes> slow_b(p, {1.0, 2.5, 1.0});
    const int m = 2 * p;
    const double h1 = simulate(ScheduleKind::zb_h1, slow_b, m).step_s;
    const double h2 = simulate(ScheduleKind::zb_h2, slow_b, m).step_s;
    const double fused = simulate(ScheduleKind::one_f_one_b, slow_b, m).step_s;
    EXPECT_LT(h1, fused) << "p=" << p;
    EXPECT_LT(h2, h1) << "p=" << p;
  }
}


// The replay as the action lists say it, written out plainly: every stage runs its compute
// actions in order, each when the stage is free and its input has arrived (sweeping the stages
// until nothing moves). Replay precomputes an order of the same actions; the arithmetic per
// action is the same, so the answers must be the same bits.
Simulation plain_replay(ScheduleKind kind, const std::vector<StageTimes>& st, int m, double p2p) {
  const int p = static_cast<int>(st.size());
  std::vector<std::vector<Action>> lists(p);
  for (int s = 0; s < p; ++s) {
    for (const Action& a : make_schedule(kind, p, s, m)) {
      if (is_compute(a.type)) lists[s].push_back(a);
    }
  }
  std::vector<std::vector<double>> fwd(p, std::vector<double>(m, -1.0)), bwd = fwd;
  std::vector<size_t> next(p, 0);
  std::vector<double> free_at(p, 0.0);
  Simulation out;
  out.busy_s.assign(p, 0.0);
  for (bool moved = true; moved;) {
    moved = false;
    for (int s = 0; s < p; ++s) {
      for (; next[s] < lists[s].size(); ++next[s], moved = true) {
        const Action& a = lists[s][next[s]];
        double ready = free_at[s], d = st[s].weight_s;
        if (a.type == ActionType::forward) {
          if (s > 0 && fwd[s - 1][a.microbatch] < 0) break;
          if (s > 0) ready = std::max(ready, fwd[s - 1][a.microbatch] + p2p);
          d = st[s].forward_s;
          fwd[s][a.microbatch] = ready + d;
        } else if (a.type != ActionType::backward_weight) {
          if (s + 1 < p && bwd[s + 1][a.microbatch] < 0) break;
          if (s + 1 < p) ready = std::max(ready, bwd[s + 1][a.microbatch] + p2p);
          d = a.type == ActionType::backward ? st[s].backward_s
                                             : st[s].backward_s - st[s].weight_s;
          bwd[s][a.microbatch] = ready + d;
        }
        free_at[s] = ready + d;
        out.busy_s[s] += d;
      }
    }
  }
  for (int s = 0; s < p; ++s) EXPECT_EQ(next[s], lists[s].size()) << "stage " << s;
  out.step_s = *std::max_element(free_at.begin(), free_at.end());
  return out;
}

// Random stage times: F, B and W each 0.1-3 units (W only where the schedule splits the
// backward), as uneven splits and heterogeneous devices give.
std::vector<StageTimes> random_times(std::mt19937& rng, ScheduleKind kind, int p) {
  std::uniform_real_distribution<double> unit(0.1, 3.0);
  std::vector<StageTimes> st(p);
  for (StageTimes& t : st) {
    t.forward_s = unit(rng);
    t.weight_s = splits_backward(kind) ? unit(rng) : 0.0;
    t.backward_s = unit(rng) + t.weight_s;
  }
  return st;
}

// Calls check(kind, p, m, replay, trial) `trials` times for every schedule, p = 1..8 and
// m = 1..3p, with the case named in any failure.
template <class Check>
void for_every_case(int trials, const Check& check) {
  for (const ScheduleInfo& info : schedules()) {
    for (int p = 1; p <= 8; ++p) {
      for (int m = 1; m <= 3 * p; ++m) {
        SCOPED_TRACE(std::string(info.name) + " p=" + std::to_string(p) +
                     " m=" + std::to_string(m));
        const Replay replay(info.kind, p, m);
        for (int trial = 0; trial < trials; ++trial) check(info.kind, p, m, replay, trial);
      }
    }
  }
}

TEST(Simulator, ReplayIsBitwiseAPlainEventReplay) {
  std::mt19937 rng(17);
  int cases = 0;
  for_every_case(3, [&](ScheduleKind kind, int p, int m, const Replay& replay, int trial) {
    const std::vector<StageTimes> st = random_times(rng, kind, p);
    const double p2p = trial == 0 ? 0.0 : 0.25 * trial;
    const Simulation want = plain_replay(kind, st, m, p2p);
    const Simulation got = replay.run(st, p2p, 1.5);
    EXPECT_EQ(got.step_s, want.step_s + 1.5);
    ASSERT_EQ(got.busy_s.size(), want.busy_s.size());
    for (int s = 0; s < p; ++s) EXPECT_EQ(got.busy_s[s], want.busy_s[s]) << "stage " << s;
    ++cases;
  });
  EXPECT_GT(cases, 1000);
}

// The planner leaves a split unreplayed when this bound already exceeds the best step found:
// a bound above the replay would throw away a better split without a trace.
TEST(Simulator, LowerBoundNeverExceedsTheReplay) {
  std::mt19937 rng(2027);
  for_every_case(6, [&](ScheduleKind kind, int p, int, const Replay& replay, int trial) {
    const std::vector<StageTimes> st = random_times(rng, kind, p);
    const double p2p = trial % 3 == 0 ? 0.0 : 0.2 * trial;
    const double step = replay.run(st, p2p, 0.5).step_s;
    const double bound = replay.lower_bound(st, p2p, 0.5);
    EXPECT_LE(bound, step * (1.0 + 1e-12));
    // One stage: nothing to wait for, the bound is the step.
    if (p == 1) {
      EXPECT_DOUBLE_EQ(bound, step);
    }
  });
  // Equal stages under 1F1B: the bound is the textbook step, 3 (m + p - 1).
  for (int p : {2, 4, 8}) {
    const Replay replay(ScheduleKind::one_f_one_b, p, 2 * p);
    EXPECT_DOUBLE_EQ(replay.lower_bound(std::vector<StageTimes>(p, {1.0, 2.0})),
                     3.0 * (3 * p - 1));
  }
}

}  // namespace
}  // namespace nupipe::parallel
