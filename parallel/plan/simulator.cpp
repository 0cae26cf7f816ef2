// simulator.cpp: an event replay of the stages' action lists (make_schedule): forward(mb) on
// stage s waits for forward(mb) of s-1 plus the transfer, backward(mb) (or its B) for that of
// s+1; a W only for its own B, earlier on the same stage.
#include "parallel/plan/simulator.h"

#include <algorithm>

#include "runtime/check.h"

namespace nupipe::parallel {

Replay::Replay(ScheduleKind kind, int p, int m) : microbatches_(m), lists_(p) {
  NUPIPE_CHECK(p >= 1 && m >= 1, "simulate: " + std::to_string(p) + " stages, " +
                                     std::to_string(m) + " microbatches");
  for (int s = 0; s < p; ++s) {
    for (const Action& a : make_schedule(kind, p, s, m)) {  // sends and receives are folded
      if (is_compute(a.type)) lists_[s].push_back(a);
    }
  }
}

Simulation Replay::run(const std::vector<StageTimes>& st, double p2p_s, double tail_s) const {
  const int p = static_cast<int>(lists_.size()), m = microbatches_;
  NUPIPE_CHECK(static_cast<int>(st.size()) == p,
               "simulate: " + std::to_string(st.size()) + " stage times for " +
                   std::to_string(p) + " stages");
  // Finish times; -1: not yet.
  std::vector<std::vector<double>> fwd(p, std::vector<double>(m, -1.0)), bwd = fwd;
  std::vector<size_t> next(p, 0);
  std::vector<double> free_at(p, 0.0);
  Simulation out;
  out.busy_s.assign(p, 0.0);
  // Advance every stage whose next action has its input, sweeping the stages first to last
  // (forwards flow that way) and then last to first (backwards do), until nothing moves; the
  // schedules are deadlock-free (tests/unit/test_schedule.cpp), so every sweep makes progress.
  // The times do not depend on the order of the sweeps, only the number of sweeps does.
  auto advance = [&](int s) {
    bool moved = false;
    while (next[s] < lists_[s].size()) {
      const Action& a = lists_[s][next[s]];
      double ready = free_at[s];
      if (a.type == ActionType::forward) {
        if (s > 0) {
          if (fwd[s - 1][a.microbatch] < 0) break;
          ready = std::max(ready, fwd[s - 1][a.microbatch] + p2p_s);
        }
        fwd[s][a.microbatch] = free_at[s] = ready + st[s].forward_s;
        out.busy_s[s] += st[s].forward_s;
      } else if (a.type == ActionType::backward_weight) {  // needs only this stage's B
        free_at[s] = ready + st[s].weight_s;
        out.busy_s[s] += st[s].weight_s;
      } else {  // the fused backward, or B
        if (s + 1 < p) {
          if (bwd[s + 1][a.microbatch] < 0) break;
          ready = std::max(ready, bwd[s + 1][a.microbatch] + p2p_s);
        }
        const double d = a.type == ActionType::backward ? st[s].backward_s
                                                        : st[s].backward_s - st[s].weight_s;
        bwd[s][a.microbatch] = free_at[s] = ready + d;
        out.busy_s[s] += d;
      }
      ++next[s];
      moved = true;
    }
    return moved;
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < p; ++s) progress = advance(s) || progress;
    for (int s = p - 1; s >= 0; --s) progress = advance(s) || progress;
  }
  for (int s = 0; s < p; ++s) {
    NUPIPE_CHECK(next[s] == lists_[s].size(), "simulate: the schedule of stage " +
                                                  std::to_string(s) + " did not complete");
  }
  const double window = *std::max_element(free_at.begin(), free_at.end());
  double busy = 0.0;
  for (double b : out.busy_s) busy += b;
  out.step_s = window + tail_s;
  out.bubble_fraction = window > 0 ? 1.0 - busy / (window * p) : 0.0;
  return out;
}

Simulation simulate(ScheduleKind kind, const std::vector<StageTimes>& stages, int microbatches,
                    double p2p_s, double tail_s) {
  return Replay(kind, static_cast<int>(stages.size()), microbatches).run(stages, p2p_s, tail_s);
}

}  // namespace nupipe::parallel
