// schedule.cpp: GPipe, 1F1B and the zero-bubble schedules built as action lists, the in-flight
// counts, and the names of schedule kinds and actions.
#include "parallel/pipeline/schedule.h"

#include <algorithm>
#include <ostream>

#include "parallel/pipeline/zero_bubble.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace nupipe::parallel {

const std::vector<ScheduleInfo>& schedules() {
  static const std::vector<ScheduleInfo> all = {
      {ScheduleKind::one_f_one_b, "1f1b", false,
       "one forward, one backward (least activation memory of the fused schedules)"},
      {ScheduleKind::gpipe, "gpipe", false, "all forwards, then all backwards"},
      {ScheduleKind::zb_h1, "zb-h1", true,
       "zero bubble, 1F1B's peak: the weights' gradients fill the bubbles"},
      {ScheduleKind::zb_h2, "zb-h2", true,
       "zero bubble, about twice 1F1B's activations, more warm-up forwards"},
  };
  return all;
}

const ScheduleInfo& schedule_info(ScheduleKind kind) {
  for (const ScheduleInfo& i : schedules()) {
    if (i.kind == kind) return i;
  }
  NUPIPE_CHECK(false, "unknown ScheduleKind " + std::to_string(static_cast<int>(kind)));
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  std::string accepted;
  const std::vector<ScheduleInfo>& all = schedules();
  for (size_t i = 0; i < all.size(); ++i) {
    if (name == all[i].name) return all[i].kind;
    accepted += std::string(i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + "\"" +
                all[i].name + "\"";
  }
  throw usage_error("parallel.schedule must be " + accepted + ", got \"" + name + "\"",
                    "set parallel.schedule = \"1f1b\" (least activation memory of the fused "
                    "schedules) or \"zb-h1\" (the same peak in microbatches, a smaller bubble)");
}

const char* schedule_name(ScheduleKind kind) { return schedule_info(kind).name; }

const char* action_name(ActionType type) {
  switch (type) {
    case ActionType::recv_activation: return "recv_activation";
    case ActionType::forward: return "forward";
    case ActionType::send_activation: return "send_activation";
    case ActionType::recv_gradient: return "recv_gradient";
    case ActionType::backward: return "backward";
    case ActionType::backward_input: return "backward_input";
    case ActionType::backward_weight: return "backward_weight";
    case ActionType::send_gradient: return "send_gradient";
  }
  NUPIPE_CHECK(false, "unknown ActionType " + std::to_string(static_cast<int>(type)));
}

bool is_compute(ActionType type) {
  return type == ActionType::forward || type == ActionType::backward ||
         type == ActionType::backward_input || type == ActionType::backward_weight;
}

namespace {

// Appends forward(mb) or backward(mb) with the communication that wraps it on this stage.
class Builder {
 public:
  Builder(int stages, int stage) : first_(stage == 0), last_(stage == stages - 1) {}

  void forward(int mb) {
    if (!first_) out_.push_back({ActionType::recv_activation, mb});
    out_.push_back({ActionType::forward, mb});
    if (!last_) out_.push_back({ActionType::send_activation, mb});
  }
  // The fused backward, or B (`type` backward_input).
  void backward(int mb, ActionType type = ActionType::backward) {
    if (!last_) out_.push_back({ActionType::recv_gradient, mb});
    out_.push_back({type, mb});
    if (!first_) out_.push_back({ActionType::send_gradient, mb});
  }
  void weight(int mb) { out_.push_back({ActionType::backward_weight, mb}); }
  std::vector<Action> take() { return std::move(out_); }

 private:
  bool first_, last_;
  std::vector<Action> out_;
};

}  // namespace

std::vector<Action> make_schedule(ScheduleKind kind, int stages, int stage, int microbatches) {
  NUPIPE_CHECK(stages >= 1, "make_schedule: stages must be >= 1, got " + std::to_string(stages));
  NUPIPE_CHECK(stage >= 0 && stage < stages, "make_schedule: stage " + std::to_string(stage) +
                                                 " outside [0, " + std::to_string(stages) + ")");
  NUPIPE_CHECK(microbatches >= 1,
               "make_schedule: microbatches must be >= 1, got " + std::to_string(microbatches));
  const int m = microbatches;
  Builder b(stages, stage);
  switch (kind) {
    case ScheduleKind::gpipe:
      for (int mb = 0; mb < m; ++mb) b.forward(mb);
      for (int mb = 0; mb < m; ++mb) b.backward(mb);
      return b.take();
    case ScheduleKind::one_f_one_b: {
      const int warmup = std::min(stages - stage - 1, m);
      for (int mb = 0; mb < warmup; ++mb) b.forward(mb);
      for (int i = 0; i < m - warmup; ++i) {  // steady: one forward, one backward
        b.forward(warmup + i);
        b.backward(i);
      }
      for (int mb = m - warmup; mb < m; ++mb) b.backward(mb);  // cool-down
      return b.take();
    }
    case ScheduleKind::zb_h1:
    case ScheduleKind::zb_h2: {
      for (const Action& a : zero_bubble_order(kind, stages, m, stage)) {
        if (a.type == ActionType::forward) b.forward(a.microbatch);
        if (a.type == ActionType::backward_input) b.backward(a.microbatch, a.type);
        if (a.type == ActionType::backward_weight) b.weight(a.microbatch);
      }
      return b.take();
    }
  }
  NUPIPE_CHECK(false, "unknown ScheduleKind " + std::to_string(static_cast<int>(kind)));
}

int max_in_flight(const std::vector<Action>& actions) {
  int now = 0, most = 0;
  for (const Action& a : actions) {
    if (a.type == ActionType::forward) most = std::max(most, ++now);
    if (a.type == ActionType::backward || a.type == ActionType::backward_input) --now;
  }
  return most;
}

int max_pending_weight(const std::vector<Action>& actions) {
  int now = 0, most = 0;
  for (const Action& a : actions) {
    if (a.type == ActionType::backward_input) most = std::max(most, ++now);
    if (a.type == ActionType::backward_weight) --now;
  }
  return most;
}

std::string to_string(const Action& action) {
  return std::string(action_name(action.type)) + "(" + std::to_string(action.microbatch) + ")";
}

std::string to_string(const std::vector<Action>& actions) {
  std::string out;
  for (const Action& a : actions) {
    if (!out.empty()) out += ' ';
    out += to_string(a);
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Action& action) {
  return os << to_string(action);
}

}  // namespace nupipe::parallel
