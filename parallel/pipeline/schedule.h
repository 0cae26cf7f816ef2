// schedule.h: pipeline schedules as pure data: the ordered forward/backward/send/receive
// actions one stage performs in one step under GPipe, 1F1B or the zero-bubble schedules
// ZB-H1 and ZB-H2 (backward split into its input and weight passes); the executor walks them.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace nupipe::parallel {

// parallel.schedule in the config.
enum class ScheduleKind { gpipe, one_f_one_b, zb_h1, zb_h2 };

// Every schedule, in one list: its name in the config and what it is.
struct ScheduleInfo {
  ScheduleKind kind;
  const char* name;     // "1f1b", "gpipe", "zb-h1", "zb-h2"
  bool split_backward;  // B and W as separate actions (else one fused backward)
  const char* summary;  // one line for errors and docs
};
const std::vector<ScheduleInfo>& schedules();
const ScheduleInfo& schedule_info(ScheduleKind kind);

// The exact spelling of a name in schedules(); anything else throws nupipe::usage_error naming
// parallel.schedule and the accepted values.
ScheduleKind parse_schedule_kind(const std::string& name);
const char* schedule_name(ScheduleKind kind);  // "1f1b" / "gpipe" / "zb-h1" / "zb-h2"
inline bool splits_backward(ScheduleKind kind) { return schedule_info(kind).split_backward; }

// Activations flow from stage s to s+1, gradients from s+1 back to s. Sends are meant to be
// posted non-blocking (buffered); receives block until their message is there.
enum class ActionType {
  recv_activation,  // from stage - 1
  forward,          // on the last stage this includes the loss and its gradient
  send_activation,  // to stage + 1
  recv_gradient,    // from stage + 1
  backward,         // B and W fused: the input's and the weights' gradients together
  backward_input,   // B: the gradient with respect to the stage's input (what stage - 1 waits
                    // for); keeps what W needs
  backward_weight,  // W: the weights' gradients, from what B kept
  send_gradient,    // to stage - 1
};
const char* action_name(ActionType type);  // "recv_activation", "forward", ...
// forward, backward, backward_input or backward_weight: an action that computes.
bool is_compute(ActionType type);

struct Action {
  ActionType type;
  int microbatch;
  int chunk = 0;  // the rank's model chunk it runs on (virtual stages; 0: the only one)
  bool operator==(const Action&) const = default;
};

// The ordered actions stage `stage` (0-based) of `stages` performs for `microbatches`
// microbatches in one step. On stage s, forward(mb) is immediately preceded by
// recv_activation(mb) when s > 0 and immediately followed by send_activation(mb) when
// s < stages-1; the backward (fused, or its input pass B) of mb is immediately preceded by
// recv_gradient(mb) when s < stages-1 and followed by send_gradient(mb) when s > 0.
// Microbatches go in increasing order through each kind of compute action.
//   gpipe: forwards 0..m-1, then backwards 0..m-1 (first in, first out: on every link the
//          gradients come back in the order the activations went out).
//   1f1b:  PipeDream-flush / Megatron non-interleaved: w = min(stages - stage - 1, m) warm-up
//          forwards, then m - w rounds of one forward and one backward, then the remaining w
//          backwards.
//   zb-h1, zb-h2: the backward split into B and W, the order found by replaying all stages
//          with F, B and W of equal length (parallel/pipeline/zero_bubble.h): a stage runs the
//          next forward if its input is there and its cap allows, else the next B if its
//          gradient is there, else the oldest pending W, so W fills what would be bubbles.
//          zb-h1 keeps each stage within 1F1B's stage-0 peak: at most min(stages - stage, m)
//          microbatches between forward and B, a forward only with at most `stage` between
//          B and W (a B may make it stage + 1; the W comes next), so at most `stages`
//          between forward and W;
//          zb-h2 allows min(2 (stages - stage) - 1, m) between forward and B and 2 stage
//          between B and W, so 2 stages - 1 between forward and W (about twice the memory;
//          more warm-up forwards, a shorter step when B is longer than F).
// Arguments out of range (stages < 1, stage outside [0, stages), microbatches < 1) fail
// NUPIPE_CHECK: they are validated by the config before they get here.
std::vector<Action> make_schedule(ScheduleKind kind, int stages, int stage, int microbatches);

// Most microbatches whose forward has run and whose backward (fused, or B) has not, at any
// point of the list: the number of microbatches' activations the stage must hold at once.
// For 1f1b it is min(stages - stage, m), for gpipe m.
int max_in_flight(const std::vector<Action>& actions);
// Most microbatches whose B has run and whose W has not (0 for fused backwards).
int max_pending_weight(const std::vector<Action>& actions);

// "forward(3)"; a list is written space-separated. For logs and test failure messages.
std::string to_string(const Action& action);
std::string to_string(const std::vector<Action>& actions);
std::ostream& operator<<(std::ostream& os, const Action& action);

}  // namespace nupipe::parallel
