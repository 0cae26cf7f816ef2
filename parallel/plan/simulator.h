// simulator.h: replays a step's pipeline schedule with per-stage forward and backward times
// and a point-to-point transfer time, and predicts the step time and the bubble: each action
// starts when its stage is free and its input has arrived.
#pragma once

#include <vector>

#include "parallel/pipeline/schedule.h"

namespace nupipe::parallel {

struct StageTimes {
  double forward_s = 0.0;   // one microbatch's forward (the last stage: with the loss)
  double backward_s = 0.0;  // one microbatch's backward, B and W (recomputation included)
  double weight_s = 0.0;    // the W share of backward_s (schedules that split it: B is the rest)
};

struct Simulation {
  double step_s = 0.0;          // from the first forward to the last stage's last backward
  double bubble_fraction = 0.0; // idle share of the stages' time over the common window
  std::vector<double> busy_s;   // compute time per stage
};

// One schedule's action lists, built once and replayed with any stage times (the planner
// replays thousands of splits of the same schedule).
class Replay {
 public:
  Replay(ScheduleKind kind, int stages, int microbatches);
  // `p2p_s`: time from a send's start to its arrival (activations and gradients alike).
  // `tail_s`: time after the pipeline on every stage (gradient reduction, optimizer), added to
  // the step but not to the bubble.
  Simulation run(const std::vector<StageTimes>& stages, double p2p_s = 0.0,
                 double tail_s = 0.0) const;

 private:
  int microbatches_;
  std::vector<std::vector<Action>> lists_;  // the compute actions of each stage, in order
};

// One replay: Replay(kind, stages.size(), microbatches).run(stages, p2p_s, tail_s).
Simulation simulate(ScheduleKind kind, const std::vector<StageTimes>& stages, int microbatches,
                    double p2p_s = 0.0, double tail_s = 0.0);

}  // namespace nupipe::parallel
