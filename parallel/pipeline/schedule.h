// schedule.h: pipeline schedules as pure data: the ordered forward/backward/send/receive
// actions one stage performs in one step under GPipe or 1F1B; the executor walks them.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace nupipe::parallel {

// parallel.schedule in the config.
enum class ScheduleKind { gpipe, one_f_one_b };

// "1f1b" or "gpipe" (exact spelling); anything else throws nupipe::usage_error naming
// parallel.schedule and the accepted values.
ScheduleKind parse_schedule_kind(const std::string& name);
const char* schedule_name(ScheduleKind kind);  // "1f1b" / "gpipe"

// Activations flow from stage s to s+1, gradients from s+1 back to s. Sends are meant to be
// posted non-blocking (buffered); receives block until their message is there.
enum class ActionType {
  recv_activation,  // from stage - 1
  forward,          // on the last stage this includes the loss and its gradient
  send_activation,  // to stage + 1
  recv_gradient,    // from stage + 1
  backward,
  send_gradient,    // to stage - 1
};
const char* action_name(ActionType type);  // "recv_activation", "forward", ...

struct Action {
  ActionType type;
  int microbatch;
  bool operator==(const Action&) const = default;
};

// The ordered actions stage `stage` (0-based) of `stages` performs for `microbatches`
// microbatches in one step. On stage s, forward(mb) is immediately preceded by
// recv_activation(mb) when s > 0 and immediately followed by send_activation(mb) when
// s < stages-1; backward(mb) is immediately preceded by recv_gradient(mb) when s < stages-1
// and followed by send_gradient(mb) when s > 0.
//   gpipe: forwards 0..m-1, then backwards 0..m-1 (first in, first out: on every link the
//          gradients come back in the order the activations went out).
//   1f1b:  PipeDream-flush / Megatron non-interleaved: w = min(stages - stage - 1, m) warm-up
//          forwards, then m - w rounds of one forward and one backward, then the remaining w
//          backwards; microbatches in increasing order in both directions.
// Arguments out of range (stages < 1, stage outside [0, stages), microbatches < 1) fail
// NUPIPE_CHECK: they are validated by the config before they get here.
std::vector<Action> make_schedule(ScheduleKind kind, int stages, int stage, int microbatches);

// Most microbatches whose forward has run and whose backward has not, at any point of the
// list: the number of microbatches' activations the stage must hold at once. For 1f1b it is
// min(stages - stage, m), for gpipe m.
int max_in_flight(const std::vector<Action>& actions);

// "forward(3)"; a list is written space-separated. For logs and test failure messages.
std::string to_string(const Action& action);
std::string to_string(const std::vector<Action>& actions);
std::ostream& operator<<(std::ostream& os, const Action& action);

}  // namespace nupipe::parallel
