// simulator.cpp: an event replay of the stages' action lists (make_schedule): forward(mb) on
// stage s waits for forward(mb) of s-1 plus the transfer, backward(mb) for backward(mb) of s+1.
#include "parallel/plan/simulator.h"

#include <algorithm>

#include "runtime/check.h"

namespace nupipe::parallel {

Simulation simulate(ScheduleKind kind, const std::vector<StageTimes>& st, int m, double p2p_s,
                    double tail_s) {
  const int p = static_cast<int>(st.size());
  NUPIPE_CHECK(p >= 1 && m >= 1, "simulate: " + std::to_string(p) + " stages, " +
                                     std::to_string(m) + " microbatches");
  std::vector<std::vector<Action>> lists(p);
  for (int s = 0; s < p; ++s) lists[s] = make_schedule(kind, p, s, m);
  // Finish times; -1: not yet.
  std::vector<std::vector<double>> fwd(p, std::vector<double>(m, -1.0)), bwd = fwd;
  std::vector<size_t> next(p, 0);
  std::vector<double> free_at(p, 0.0);
  Simulation out;
  out.busy_s.assign(p, 0.0);
  // Sweep: advance any stage whose next compute action has its input; the schedules are
  // deadlock-free (tests/unit/test_schedule.cpp), so every sweep makes progress.
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < p; ++s) {
      while (next[s] < lists[s].size()) {
        const Action& a = lists[s][next[s]];
        if (a.type == ActionType::forward) {
          double ready = free_at[s];
          if (s > 0) {
            if (fwd[s - 1][a.microbatch] < 0) break;
            ready = std::max(ready, fwd[s - 1][a.microbatch] + p2p_s);
          }
          fwd[s][a.microbatch] = free_at[s] = ready + st[s].forward_s;
          out.busy_s[s] += st[s].forward_s;
        } else if (a.type == ActionType::backward) {
          double ready = free_at[s];
          if (s + 1 < p) {
            if (bwd[s + 1][a.microbatch] < 0) break;
            ready = std::max(ready, bwd[s + 1][a.microbatch] + p2p_s);
          }
          bwd[s][a.microbatch] = free_at[s] = ready + st[s].backward_s;
          out.busy_s[s] += st[s].backward_s;
        }
        ++next[s];  // sends and receives are folded into the waits above
        progress = true;
      }
    }
  }
  for (int s = 0; s < p; ++s) {
    NUPIPE_CHECK(next[s] == lists[s].size(), "simulate: the schedule of stage " +
                                                 std::to_string(s) + " did not complete");
  }
  const double window = *std::max_element(free_at.begin(), free_at.end());
  double busy = 0.0;
  for (double b : out.busy_s) busy += b;
  out.step_s = window + tail_s;
  out.bubble_fraction = window > 0 ? 1.0 - busy / (window * p) : 0.0;
  return out;
}

}  // namespace nupipe::parallel
