// zero_bubble.cpp: the unit-time replay of all stages that orders the zero-bubble schedules'
// forward, B and W passes.
#include "parallel/pipeline/zero_bubble.h"

#include <algorithm>

#include "runtime/check.h"

namespace nupipe::parallel {

ZeroBubbleCaps zero_bubble_caps(ScheduleKind kind, int stages, int stage, int m) {
  switch (kind) {
    case ScheduleKind::zb_h1: return {std::min(stages - stage, m), stage};
    case ScheduleKind::zb_h2: return {std::min(2 * (stages - stage) - 1, m), 2 * stage};
    case ScheduleKind::gpipe:
    case ScheduleKind::one_f_one_b: break;
  }
  NUPIPE_CHECK(false, std::string("zero_bubble_caps: ") + schedule_name(kind) +
                          " does not split the backward");
}

std::vector<Action> zero_bubble_order(ScheduleKind kind, int p, int m, int stage) {
  NUPIPE_CHECK(p >= 1 && m >= 1 && stage >= 0 && stage < p,
               "zero_bubble_order: stage " + std::to_string(stage) + " of " +
                   std::to_string(p) + ", " + std::to_string(m) + " microbatches");
  std::vector<ZeroBubbleCaps> caps;
  for (int s = 0; s < p; ++s) caps.push_back(zero_bubble_caps(kind, p, s, m));
  // Passes done per stage (each in microbatch order) and the step each forward / B ended at.
  std::vector<int> forwards(p, 0), inputs(p, 0), weights(p, 0);
  std::vector<std::vector<int>> forward_end(p, std::vector<int>(m, -1)), input_end = forward_end;
  std::vector<Action> out;
  const long limit = 4L * (3L * m + p) + 16;  // every step some stage moves (checked below)
  for (long t = 0; weights[stage] < m; ++t) {
    NUPIPE_CHECK(t < limit, "zero_bubble_order: the replay of " + std::to_string(p) +
                                " stages did not finish");
    // Passes started at step t end at t + 1: what a stage sees at t was decided before t, so
    // the stages' order within a step does not matter.
    for (int s = 0; s < p; ++s) {
      const int f = forwards[s], b = inputs[s], w = weights[s];
      const bool input_there = f < m && (s == 0 || (forward_end[s - 1][f] >= 0 &&
                                                    forward_end[s - 1][f] <= t));
      const bool gradient_there =
          b < f && (s == p - 1 ? forward_end[s][b] <= t
                               : input_end[s + 1][b] >= 0 && input_end[s + 1][b] <= t);
      ActionType type;
      if (b - w > caps[s].pending_weights) {
        type = ActionType::backward_weight;
      } else if (input_there && f - b < caps[s].activations) {
        type = ActionType::forward;
      } else if (gradient_there) {
        type = ActionType::backward_input;
      } else if (b > w) {
        type = ActionType::backward_weight;
      } else {
        continue;  // waits
      }
      int mb = 0;
      if (type == ActionType::forward) forward_end[s][mb = forwards[s]++] = static_cast<int>(t + 1);
      if (type == ActionType::backward_input) input_end[s][mb = inputs[s]++] = static_cast<int>(t + 1);
      if (type == ActionType::backward_weight) mb = weights[s]++;
      if (s == stage) out.push_back({type, mb});
    }
  }
  return out;
}

}  // namespace nupipe::parallel
