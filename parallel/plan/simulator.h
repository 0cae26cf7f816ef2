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
// replays millions of splits of the same schedule). The order in which the actions can run
// does not depend on their times, only on the lists and the transfers between them, so it is
// found once, here; a replay is then one pass over it.
class Replay {
 public:
  Replay(ScheduleKind kind, int stages, int microbatches);
  // `p2p_s`: time from a send's start to its arrival (activations and gradients alike).
  // `tail_s`: time after the pipeline on every stage (gradient reduction, optimizer), added to
  // the step but not to the bubble.
  Simulation run(const std::vector<StageTimes>& stages, double p2p_s = 0.0,
                 double tail_s = 0.0) const;
  // A bound run(stages, p2p_s, tail_s).step_s never falls below, in O(stages) (the planner
  // skips the replay of a split sure to lose): stage s starts once the first microbatch has
  // come forward through stages 0..s-1 and then computes m forwards and backwards; its last B
  // (or fused backward) comes after m forwards and m Bs, and that microbatch's gradient then
  // goes back through stages s-1..0, whose W may still follow (a W waits for no neighbour, so
  // only stage 0's last one is sure to come after).
  double lower_bound(const std::vector<StageTimes>& stages, double p2p_s = 0.0,
                     double tail_s = 0.0) const;

 private:
  // One compute action in an order where each comes after what it waits for: the one before
  // it on its stage, and the action on a neighbouring stage whose output it receives. The
  // order goes by depth (the most actions on any chain of waits leading to it), so that
  // neighbours in it are mostly independent and a replay overlaps them.
  enum class Part : unsigned char { forward, backward, input, weight };
  struct Step {
    int stage;
    Part part;
    int after;      // index into the order of the stage's previous action (-1: none)
    int waits_for;  // index into the order of the neighbour's action (-1: none)
  };
  int stages_, microbatches_;
  std::vector<Step> order_;
};

// One replay: Replay(kind, stages.size(), microbatches).run(stages, p2p_s, tail_s).
Simulation simulate(ScheduleKind kind, const std::vector<StageTimes>& stages, int microbatches,
                    double p2p_s = 0.0, double tail_s = 0.0);

}  // namespace nupipe::parallel
