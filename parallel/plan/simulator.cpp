// simulator.cpp: an event replay of the stages' action lists (make_schedule): forward(mb) on
// stage s waits for forward(mb) of s-1 plus the transfer, backward(mb) (or its B) for that of
// s+1; a W only for its own B, earlier on the same stage.
#include "parallel/plan/simulator.h"

#include <algorithm>
#include <numeric>

#include "runtime/check.h"

namespace nupipe::parallel {

Replay::Replay(ScheduleKind kind, int p, int m) : stages_(p), microbatches_(m) {
  NUPIPE_CHECK(p >= 1 && m >= 1, "simulate: " + std::to_string(p) + " stages, " +
                                     std::to_string(m) + " microbatches");
  std::vector<std::vector<Action>> lists(p);
  for (int s = 0; s < p; ++s) {
    for (const Action& a : make_schedule(kind, p, s, m)) {  // sends and receives are folded
      if (is_compute(a.type)) lists[s].push_back(a);
    }
  }
  // Where each stage's forward and backward (or B) of each microbatch sits in the order; -1:
  // not placed yet.
  std::vector<std::vector<int>> fwd(p, std::vector<int>(m, -1)), bwd = fwd;
  std::vector<size_t> next(p, 0);
  std::vector<int> last(p, -1);  // each stage's last placed action
  // Place every stage's next actions whose inputs are placed, sweeping the stages first to
  // last (forwards flow that way) and then last to first (backwards do), until nothing moves;
  // the schedules are deadlock-free (tests/unit/test_schedule.cpp), so every sweep makes
  // progress.
  auto advance = [&](int s) {
    bool moved = false;
    for (; next[s] < lists[s].size(); ++next[s], moved = true) {
      const Action& a = lists[s][next[s]];
      const int here = static_cast<int>(order_.size());
      if (a.type == ActionType::forward) {
        const int from = s > 0 ? fwd[s - 1][a.microbatch] : -1;
        if (s > 0 && from < 0) break;
        order_.push_back({s, Part::forward, last[s], from});
        fwd[s][a.microbatch] = here;
      } else if (a.type == ActionType::backward_weight) {  // needs only this stage's B
        order_.push_back({s, Part::weight, last[s], -1});
      } else {  // the fused backward, or B
        const int from = s + 1 < p ? bwd[s + 1][a.microbatch] : -1;
        if (s + 1 < p && from < 0) break;
        order_.push_back({s, a.type == ActionType::backward ? Part::backward : Part::input,
                          last[s], from});
        bwd[s][a.microbatch] = here;
      }
      last[s] = here;
    }
    return moved;
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < p; ++s) progress = advance(s) || progress;
    for (int s = p - 1; s >= 0; --s) progress = advance(s) || progress;
  }
  for (int s = 0; s < p; ++s) {
    NUPIPE_CHECK(next[s] == lists[s].size(), "simulate: the schedule of stage " +
                                                 std::to_string(s) + " did not complete");
  }
  // Reorder by depth; within a depth as placed, so each stage's actions keep their order.
  std::vector<int> depth(order_.size(), 0);
  for (size_t i = 0; i < order_.size(); ++i) {
    for (int before : {order_[i].after, order_[i].waits_for}) {
      if (before >= 0) depth[i] = std::max(depth[i], depth[before] + 1);
    }
  }
  std::vector<int> by_depth(order_.size());
  std::iota(by_depth.begin(), by_depth.end(), 0);
  std::stable_sort(by_depth.begin(), by_depth.end(),
                   [&](int a, int b) { return depth[a] < depth[b]; });
  std::vector<int> moved_to(order_.size());
  for (size_t i = 0; i < by_depth.size(); ++i) moved_to[by_depth[i]] = static_cast<int>(i);
  std::vector<Step> sorted;
  sorted.reserve(order_.size());
  for (int i : by_depth) {
    Step a = order_[i];
    if (a.after >= 0) a.after = moved_to[a.after];
    if (a.waits_for >= 0) a.waits_for = moved_to[a.waits_for];
    sorted.push_back(a);
  }
  order_ = std::move(sorted);
}

Simulation Replay::run(const std::vector<StageTimes>& st, double p2p_s, double tail_s) const {
  const int p = stages_;
  NUPIPE_CHECK(static_cast<int>(st.size()) == p,
               "simulate: " + std::to_string(st.size()) + " stage times for " +
                   std::to_string(p) + " stages");
  // Each action starts when its stage is free and its input has arrived.
  std::vector<double> done(order_.size());
  Simulation out;
  out.busy_s.assign(p, 0.0);
  double window = 0.0;
  for (size_t i = 0; i < order_.size(); ++i) {
    const Step& a = order_[i];
    const StageTimes& t = st[a.stage];
    double ready = a.after >= 0 ? done[a.after] : 0.0;
    if (a.waits_for >= 0) ready = std::max(ready, done[a.waits_for] + p2p_s);
    double d = t.forward_s;
    if (a.part == Part::backward) d = t.backward_s;
    if (a.part == Part::input) d = t.backward_s - t.weight_s;
    if (a.part == Part::weight) d = t.weight_s;
    done[i] = ready + d;
    window = std::max(window, done[i]);
    out.busy_s[a.stage] += d;
  }
  double busy = 0.0;
  for (double b : out.busy_s) busy += b;
  out.step_s = window + tail_s;
  out.bubble_fraction = window > 0 ? 1.0 - busy / (window * p) : 0.0;
  return out;
}

double Replay::lower_bound(const std::vector<StageTimes>& st, double p2p_s, double tail_s) const {
  const int m = microbatches_;
  // ahead_f, ahead_b: the forwards and the Bs (or fused backwards) of the stages ahead of s.
  double ahead_f = 0.0, ahead_b = 0.0, lower = 0.0;
  for (int s = 0; s < static_cast<int>(st.size()); ++s) {
    const double f = st[s].forward_s, w = st[s].weight_s, b = st[s].backward_s - w;
    const double last_b = m * (f + b) + s * p2p_s + ahead_b + (s > 0 ? st[0].weight_s : 0.0);
    lower = std::max(lower, ahead_f + s * p2p_s + std::max(m * (f + b + w), last_b));
    ahead_f += f;
    ahead_b += b;
  }
  return lower + tail_s;
}

Simulation simulate(ScheduleKind kind, const std::vector<StageTimes>& stages, int microbatches,
                    double p2p_s, double tail_s) {
  return Replay(kind, static_cast<int>(stages.size()), microbatches).run(stages, p2p_s, tail_s);
}

}  // namespace nupipe::parallel
