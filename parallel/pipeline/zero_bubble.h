// zero_bubble.h: the order of the forward, B and W passes of the zero-bubble schedules, found
// by replaying every stage with passes of equal length under per-stage memory caps.
#pragma once

#include <vector>

#include "parallel/pipeline/schedule.h"

namespace nupipe::parallel {

// What a stage may hold: microbatches between their forward and their B (activations), and
// the pending W count above which the stage runs a W before anything else.
struct ZeroBubbleCaps {
  int activations = 1;
  int pending_weights = 0;
};
// zb-h1: min(stages - stage, m) activations and `stage` pending W, so at most `stages`
// microbatches between forward and W: 1F1B's peak on stage 0.
// zb-h2: min(2 (stages - stage) - 1, m) activations and 2 stage pending W, so at most
// 2 stages - 1 microbatches between forward and W.
ZeroBubbleCaps zero_bubble_caps(ScheduleKind kind, int stages, int stage, int microbatches);

// The compute actions (forward, backward_input, backward_weight) of `stage` under zb-h1 or
// zb-h2, in order. Every stage is replayed in unit time steps with F, B and W one step each
// and its caps: a free stage runs the W it owes (pending above its cap), else the next
// forward if its input has arrived and it holds fewer activations than its cap, else the next
// B if its gradient has arrived (on the last stage: once its forward is done), else the
// oldest pending W, else it waits. The lists come from one consistent replay, so they cannot
// deadlock whatever the real lengths of the passes.
std::vector<Action> zero_bubble_order(ScheduleKind kind, int stages, int microbatches, int stage);

}  // namespace nupipe::parallel
