// test_schedule.cpp: GPipe, 1F1B, ZB-H1 and ZB-H2 schedules as data: exact small cases, every
// send matched FIFO by its receive, F before B before W, in-flight counts, and a deadlock
// simulation of all stages.
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "parallel/pipeline/schedule.h"
#include "runtime/error.h"

namespace nupipe::parallel {
namespace {

using T = ActionType;
constexpr ScheduleKind kKinds[] = {ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                                   ScheduleKind::zb_h1, ScheduleKind::zb_h2};
constexpr int kMaxStages = 8;
constexpr int kMaxMicrobatches = 24;  // 3 x kMaxStages

using Lists = std::vector<std::vector<Action>>;  // one action list per stage

Lists all_stages(ScheduleKind kind, int p, int m) {
  Lists lists;
  for (int s = 0; s < p; ++s) lists.push_back(make_schedule(kind, p, s, m));
  return lists;
}

// Calls fn for every kind, p in 1..8 and m in 1..24, with a trace naming the case.
void for_each_case(const std::function<void(ScheduleKind, int, int)>& fn) {
  for (ScheduleKind kind : kKinds) {
    for (int p = 1; p <= kMaxStages; ++p) {
      for (int m = 1; m <= kMaxMicrobatches; ++m) {
        SCOPED_TRACE(std::string(schedule_name(kind)) + " p=" + std::to_string(p) +
                     " m=" + std::to_string(m));
        fn(kind, p, m);
      }
    }
  }
}

// The microbatches of the actions of one type, in list order.
std::vector<int> microbatches_of(const std::vector<Action>& actions, ActionType type) {
  std::vector<int> out;
  for (const Action& a : actions) {
    if (a.type == type) out.push_back(a.microbatch);
  }
  return out;
}

std::vector<int> iota(int m) {
  std::vector<int> out(m);
  for (int i = 0; i < m; ++i) out[i] = i;
  return out;
}

// ---- the deadlock simulator ------------------------------------------------------------

// All stages run together: a send completes at once into its link's FIFO, a receive blocks
// until a message is at the front of its link and must find the microbatch it names there.
// Each round every unfinished stage tries its next action; a round in which no stage moves
// while some are unfinished is a deadlock. (The stages only share FIFOs with one reader and
// one writer each, so whether they finish does not depend on the order they are stepped in.)
struct SimResult {
  bool finished = false;
  std::string problem;  // why not: the deadlocked stages and what they wait for, or a mismatch
};

SimResult simulate(const Lists& lists) {
  const int p = static_cast<int>(lists.size());
  // act[s]: activations from s to s+1; grad[s]: gradients from s+1 to s.
  std::vector<std::deque<int>> act(p), grad(p);
  std::vector<size_t> pc(p, 0);
  SimResult result;
  auto fail = [&](int s, const std::string& why) {
    result.problem =
        "stage " + std::to_string(s) + " at " + to_string(lists[s][pc[s]]) + ": " + why;
    return result;
  };
  for (;;) {
    bool moved = false, done = true;
    for (int s = 0; s < p; ++s) {
      if (pc[s] == lists[s].size()) continue;
      done = false;
      const Action& a = lists[s][pc[s]];
      std::deque<int>* queue = nullptr;  // the link a communication action uses
      switch (a.type) {
        case T::forward:
        case T::backward:
        case T::backward_input:
        case T::backward_weight: break;
        case T::send_activation:
        case T::recv_gradient:
          if (s + 1 >= p) return fail(s, "no next stage");
          queue = a.type == T::send_activation ? &act[s] : &grad[s];
          break;
        case T::recv_activation:
        case T::send_gradient:
          if (s == 0) return fail(s, "no previous stage");
          queue = a.type == T::recv_activation ? &act[s - 1] : &grad[s - 1];
          break;
      }
      if (a.type == T::send_activation || a.type == T::send_gradient) {
        queue->push_back(a.microbatch);
      } else if (queue != nullptr) {
        if (queue->empty()) continue;  // blocked
        if (queue->front() != a.microbatch) {
          return fail(s, "found microbatch " + std::to_string(queue->front()) + " instead");
        }
        queue->pop_front();
      }
      ++pc[s];
      moved = true;
    }
    if (done) break;
    if (!moved) {
      result.problem = "deadlock:";
      for (int s = 0; s < p; ++s) {
        if (pc[s] < lists[s].size()) {
          result.problem +=
              " stage " + std::to_string(s) + " waits in " + to_string(lists[s][pc[s]]) + ";";
        }
      }
      return result;
    }
  }
  for (int s = 0; s + 1 < p; ++s) {
    if (!act[s].empty() || !grad[s].empty()) {
      result.problem = "messages left unreceived on link " + std::to_string(s) + "-" +
                       std::to_string(s + 1);
      return result;
    }
  }
  result.finished = true;
  return result;
}

// ---- parsing and names -----------------------------------------------------------------

TEST(ScheduleKindTest, ParsesTheAcceptedNamesAndRoundTrips) {
  EXPECT_EQ(parse_schedule_kind("1f1b"), ScheduleKind::one_f_one_b);
  EXPECT_EQ(parse_schedule_kind("gpipe"), ScheduleKind::gpipe);
  EXPECT_EQ(parse_schedule_kind("zb-h1"), ScheduleKind::zb_h1);
  EXPECT_EQ(parse_schedule_kind("zb-h2"), ScheduleKind::zb_h2);
  EXPECT_EQ(schedules().size(), std::size(kKinds));
  for (const ScheduleInfo& i : schedules()) {
    EXPECT_EQ(splits_backward(i.kind), i.kind == ScheduleKind::zb_h1 || i.kind == ScheduleKind::zb_h2);
  }
  for (ScheduleKind kind : kKinds) EXPECT_EQ(parse_schedule_kind(schedule_name(kind)), kind);
  EXPECT_STREQ(schedule_name(ScheduleKind::one_f_one_b), "1f1b");
  EXPECT_STREQ(schedule_name(ScheduleKind::gpipe), "gpipe");
}

TEST(ScheduleKindTest, RejectsOtherNamesAsUsageErrorNamingTheKey) {
  for (const char* bad : {"", "1F1B", "GPipe", "interleaved", " 1f1b", "gpipe ", "1f1b_interleaved",
                          "pipedream", "zb_h1", "ZB-H1", "zbh1", "zb-v"}) {
    SCOPED_TRACE(std::string("name '") + bad + "'");
    try {
      parse_schedule_kind(bad);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::usage);
      const std::string what = e.what();
      EXPECT_NE(what.find("parallel.schedule"), std::string::npos) << what;
      EXPECT_NE(what.find("\"1f1b\""), std::string::npos) << what;
      EXPECT_NE(what.find("\"gpipe\""), std::string::npos) << what;
      EXPECT_NE(what.find("\"zb-h1\""), std::string::npos) << what;
      EXPECT_NE(what.find("\"zb-h2\""), std::string::npos) << what;
      EXPECT_FALSE(e.hint().empty());
    }
  }
}

TEST(ScheduleActionTest, NamesAreDistinctAndPrintable) {
  const T all[] = {T::recv_activation, T::forward,        T::send_activation,
                   T::recv_gradient,   T::backward,       T::backward_input,
                   T::backward_weight, T::send_gradient};
  std::vector<std::string> names;
  for (T t : all) {
    names.push_back(action_name(t));
    for (size_t i = 0; i + 1 < names.size(); ++i) EXPECT_NE(names[i], names.back());
  }
  EXPECT_EQ(names[1], "forward");
  for (T t : all) {
    EXPECT_EQ(is_compute(t), t == T::forward || t == T::backward || t == T::backward_input ||
                                 t == T::backward_weight);
  }
  EXPECT_EQ(to_string(Action{T::recv_gradient, 7}), "recv_gradient(7)");
  EXPECT_EQ(to_string(std::vector<Action>{{T::forward, 0}, {T::backward, 0}}),
            "forward(0) backward(0)");
}

TEST(ScheduleArgsTest, OutOfRangeArgumentsFailTheCheck) {
  auto code_of = [](int stages, int stage, int m) -> std::optional<ExitCode> {
    try {
      make_schedule(ScheduleKind::one_f_one_b, stages, stage, m);
    } catch (const Error& e) {
      return e.code();
    }
    return std::nullopt;
  };
  EXPECT_EQ(code_of(0, 0, 1), ExitCode::internal);
  EXPECT_EQ(code_of(-1, 0, 1), ExitCode::internal);
  EXPECT_EQ(code_of(2, -1, 1), ExitCode::internal);
  EXPECT_EQ(code_of(2, 2, 1), ExitCode::internal);
  EXPECT_EQ(code_of(2, 1, 0), ExitCode::internal);
  EXPECT_EQ(code_of(2, 1, -3), ExitCode::internal);
  EXPECT_EQ(code_of(2, 1, 1), std::nullopt);
  EXPECT_EQ(code_of(1, 0, 1), std::nullopt);
}

// ---- exact small cases, written out by hand --------------------------------------------

constexpr auto RA = T::recv_activation;
constexpr auto F = T::forward;
constexpr auto SA = T::send_activation;
constexpr auto RG = T::recv_gradient;
constexpr auto B = T::backward;
constexpr auto SG = T::send_gradient;

void expect_schedule(ScheduleKind kind, int p, int s, int m, const std::vector<Action>& want) {
  const std::vector<Action> got = make_schedule(kind, p, s, m);
  EXPECT_EQ(got, want) << schedule_name(kind) << " p=" << p << " stage " << s << " m=" << m
                       << "\n got:  " << to_string(got) << "\n want: " << to_string(want);
}

TEST(ScheduleExactTest, OneStageHasNoCommunication) {
  expect_schedule(ScheduleKind::one_f_one_b, 1, 0, 2, {{F, 0}, {B, 0}, {F, 1}, {B, 1}});
  expect_schedule(ScheduleKind::gpipe, 1, 0, 2, {{F, 0}, {F, 1}, {B, 0}, {B, 1}});
  expect_schedule(ScheduleKind::one_f_one_b, 1, 0, 1, {{F, 0}, {B, 0}});
}

TEST(ScheduleExactTest, OneFOneBTwoStagesThreeMicrobatches) {
  // Stage 0: one warm-up forward, two steady rounds, one cool-down backward.
  expect_schedule(ScheduleKind::one_f_one_b, 2, 0, 3,
                  {{F, 0}, {SA, 0},
                   {F, 1}, {SA, 1}, {RG, 0}, {B, 0},
                   {F, 2}, {SA, 2}, {RG, 1}, {B, 1},
                   {RG, 2}, {B, 2}});
  // Stage 1 (last): no warm-up; its backward needs no receive.
  expect_schedule(ScheduleKind::one_f_one_b, 2, 1, 3,
                  {{RA, 0}, {F, 0}, {B, 0}, {SG, 0},
                   {RA, 1}, {F, 1}, {B, 1}, {SG, 1},
                   {RA, 2}, {F, 2}, {B, 2}, {SG, 2}});
}

TEST(ScheduleExactTest, OneFOneBMiddleStageAndWarmupCappedByMicrobatches) {
  expect_schedule(ScheduleKind::one_f_one_b, 3, 1, 4,
                  {{RA, 0}, {F, 0}, {SA, 0},
                   {RA, 1}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {SG, 0},
                   {RA, 2}, {F, 2}, {SA, 2}, {RG, 1}, {B, 1}, {SG, 1},
                   {RA, 3}, {F, 3}, {SA, 3}, {RG, 2}, {B, 2}, {SG, 2},
                   {RG, 3}, {B, 3}, {SG, 3}});
  // p - s - 1 = 3 > m = 2: every forward is warm-up, no steady phase.
  expect_schedule(ScheduleKind::one_f_one_b, 4, 0, 2,
                  {{F, 0}, {SA, 0}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {RG, 1}, {B, 1}});
}

TEST(ScheduleExactTest, GPipeTwoStages) {
  expect_schedule(ScheduleKind::gpipe, 2, 0, 2,
                  {{F, 0}, {SA, 0}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {RG, 1}, {B, 1}});
  expect_schedule(ScheduleKind::gpipe, 2, 1, 2,
                  {{RA, 0}, {F, 0}, {RA, 1}, {F, 1}, {B, 0}, {SG, 0}, {B, 1}, {SG, 1}});
}

// ---- properties over p in 1..8, m in 1..16, both kinds ---------------------------------

TEST(SchedulePropertyTest, EachComputeOnceInIncreasingOrderForwardBeforeBackwardBeforeWeight) {
  for_each_case([](ScheduleKind kind, int p, int m) {
    const bool split = splits_backward(kind);
    const ActionType back = split ? T::backward_input : T::backward;
    for (int s = 0; s < p; ++s) {
      SCOPED_TRACE("stage " + std::to_string(s));
      const std::vector<Action> list = make_schedule(kind, p, s, m);
      EXPECT_EQ(microbatches_of(list, F), iota(m));
      EXPECT_EQ(microbatches_of(list, back), iota(m));
      EXPECT_EQ(microbatches_of(list, T::backward_weight), split ? iota(m) : std::vector<int>{});
      EXPECT_TRUE(microbatches_of(list, split ? T::backward : T::backward_input).empty());
      std::vector<int> forward_at(m, -1), input_at(m, -1);
      for (int i = 0; i < static_cast<int>(list.size()); ++i) {
        ASSERT_GE(list[i].microbatch, 0);
        ASSERT_LT(list[i].microbatch, m);
        EXPECT_EQ(list[i].chunk, 0);
        if (list[i].type == F) forward_at[list[i].microbatch] = i;
        if (list[i].type == back) {
          EXPECT_GE(forward_at[list[i].microbatch], 0) << "backward before forward at " << i;
          input_at[list[i].microbatch] = i;
        }
        if (list[i].type == T::backward_weight) {
          EXPECT_GE(input_at[list[i].microbatch], 0) << "W before B at " << i;
        }
      }
    }
  });
}

// recv_activation right before forward on every stage but the first, send_activation right
// after it on every stage but the last; the mirror for backward (or B); W alone; nothing else
// in the list.
TEST(SchedulePropertyTest, CommunicationWrapsComputeExactlyAtTheStageBoundaries) {
  for_each_case([](ScheduleKind kind, int p, int m) {
    const bool split = splits_backward(kind);
    const ActionType back = split ? T::backward_input : T::backward;
    for (int s = 0; s < p; ++s) {
      SCOPED_TRACE("stage " + std::to_string(s));
      const std::vector<Action> list = make_schedule(kind, p, s, m);
      const bool first = s == 0, last = s == p - 1;
      const size_t per_mb = (split ? 3 : 2) + (first ? 0 : 2) + (last ? 0 : 2);
      ASSERT_EQ(list.size(), per_mb * m) << to_string(list);
      size_t i = 0;
      auto expect_at = [&](ActionType type, int mb) {
        ASSERT_LT(i, list.size());
        EXPECT_EQ(list[i], (Action{type, mb})) << "at " << i << " of " << to_string(list);
        ++i;
      };
      while (i < list.size()) {
        const Action compute = list[i + (list[i].type == RA || list[i].type == RG ? 1 : 0)];
        const int mb = compute.microbatch;
        if (compute.type == F) {
          if (!first) expect_at(RA, mb);
          expect_at(F, mb);
          if (!last) expect_at(SA, mb);
        } else if (split && compute.type == T::backward_weight) {
          expect_at(T::backward_weight, mb);
        } else {
          ASSERT_EQ(compute.type, back) << "at " << i << " of " << to_string(list);
          if (!last) expect_at(RG, mb);
          expect_at(back, mb);
          if (!first) expect_at(SG, mb);
        }
      }
    }
  });
}

// On every link the sequence of sends equals the sequence of receives on the other side, so
// FIFO matching pairs each send with exactly one receive of the same microbatch.
TEST(SchedulePropertyTest, EverySendHasOneMatchingReceiveInFifoOrder) {
  for_each_case([](ScheduleKind kind, int p, int m) {
    const Lists lists = all_stages(kind, p, m);
    EXPECT_TRUE(microbatches_of(lists[0], RA).empty());
    EXPECT_TRUE(microbatches_of(lists[0], SG).empty());
    EXPECT_TRUE(microbatches_of(lists[p - 1], SA).empty());
    EXPECT_TRUE(microbatches_of(lists[p - 1], RG).empty());
    for (int s = 0; s + 1 < p; ++s) {
      SCOPED_TRACE("link " + std::to_string(s) + "-" + std::to_string(s + 1));
      const std::vector<int> sent_act = microbatches_of(lists[s], SA);
      EXPECT_EQ(sent_act.size(), static_cast<size_t>(m));
      EXPECT_EQ(sent_act, microbatches_of(lists[s + 1], RA));
      const std::vector<int> sent_grad = microbatches_of(lists[s + 1], SG);
      EXPECT_EQ(sent_grad.size(), static_cast<size_t>(m));
      EXPECT_EQ(sent_grad, microbatches_of(lists[s], RG));
    }
  });
}

// Most microbatches between forward and W (fused: between forward and backward).
int max_held(const std::vector<Action>& actions) {
  int now = 0, most = 0;
  for (const Action& a : actions) {
    if (a.type == F) most = std::max(most, ++now);
    if (a.type == B || a.type == T::backward_weight) --now;
  }
  return most;
}

TEST(SchedulePropertyTest, InFlightCountsAreWhatTheMemoryModelAssumes) {
  for_each_case([](ScheduleKind kind, int p, int m) {
    for (int s = 0; s < p; ++s) {
      SCOPED_TRACE("stage " + std::to_string(s));
      const std::vector<Action> list = make_schedule(kind, p, s, m);
      switch (kind) {
        case ScheduleKind::one_f_one_b:
          EXPECT_EQ(max_in_flight(list), std::min(p - s, m));
          EXPECT_EQ(max_pending_weight(list), 0);
          break;
        case ScheduleKind::gpipe:
          EXPECT_EQ(max_in_flight(list), m);
          EXPECT_EQ(max_pending_weight(list), 0);
          break;
        case ScheduleKind::zb_h1:  // within 1F1B's stage-0 peak, on every stage
          EXPECT_LE(max_in_flight(list), std::min(p - s, m));
          EXPECT_LE(max_pending_weight(list), s + 1);
          EXPECT_LE(max_held(list), std::min(p, m));
          break;
        case ScheduleKind::zb_h2:
          EXPECT_LE(max_in_flight(list), std::min(2 * (p - s) - 1, m));
          EXPECT_LE(max_pending_weight(list), 2 * s + 1);
          EXPECT_LE(max_held(list), std::min(2 * p - 1, m));
          break;
      }
      EXPECT_EQ(max_in_flight(list), max_in_flight(make_schedule(kind, p, s, m)))
          << "the same list every time";
    }
  });
}

TEST(ScheduleInFlightTest, CountsForwardsNotYetBackwardOnHandWrittenLists) {
  EXPECT_EQ(max_in_flight({}), 0);
  EXPECT_EQ(max_in_flight({{F, 0}, {B, 0}, {F, 1}, {B, 1}}), 1);
  EXPECT_EQ(max_in_flight({{F, 0}, {F, 1}, {B, 0}, {F, 2}, {B, 1}, {B, 2}}), 2);
  EXPECT_EQ(max_in_flight({{RA, 0}, {F, 0}, {SA, 0}, {RA, 1}, {F, 1}, {SA, 1}, {F, 2},
                           {RG, 0}, {B, 0}, {B, 1}, {B, 2}}),
            3);
}

// ---- deadlock freedom under buffered sends and blocking receives -----------------------

TEST(ScheduleDeadlockTest, AllStagesFinishForEveryCase) {
  for_each_case([](ScheduleKind kind, int p, int m) {
    const SimResult r = simulate(all_stages(kind, p, m));
    EXPECT_TRUE(r.finished) << r.problem;
  });
}

TEST(ScheduleDeadlockTest, SimulatorReportsAHandWrittenDeadlock) {
  // Stage 0 waits for gradient 0 before sending activation 0; stage 1 waits for activation 0.
  const Lists lists = {
      {{F, 0}, {RG, 0}, {SA, 0}, {B, 0}},
      {{RA, 0}, {F, 0}, {B, 0}, {SG, 0}},
  };
  const SimResult r = simulate(lists);
  EXPECT_FALSE(r.finished);
  EXPECT_NE(r.problem.find("deadlock"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("recv_gradient(0)"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("recv_activation(0)"), std::string::npos) << r.problem;
}

// A realistic bug: stage 0 of a 1F1B schedule with its warm-up one forward short (it waits
// for gradient 0 after sending only activation 0). Stage 1 needs activation 1 before it can
// send gradient 0 whenever it has a warm-up of its own (p >= 3) and there is a microbatch 1
// (m >= 2); with p = 2 stage 1 has no warm-up and the step still completes.
std::vector<Action> warmup_one_short_on_stage0(int p, int m) {
  std::vector<Action> list = make_schedule(ScheduleKind::one_f_one_b, p, 0, m);
  std::vector<Action> out = {{F, 0}, {SA, 0}, {RG, 0}, {B, 0}};
  for (const Action& a : list) {
    if (a != Action{F, 0} && a != Action{SA, 0} && a != Action{RG, 0} && a != Action{B, 0}) {
      out.push_back(a);
    }
  }
  return out;
}

TEST(ScheduleDeadlockTest, SimulatorReportsAWarmupOneShortOnStage0) {
  for (int p = 2; p <= kMaxStages; ++p) {
    for (int m = 1; m <= kMaxMicrobatches; ++m) {
      SCOPED_TRACE("p=" + std::to_string(p) + " m=" + std::to_string(m));
      Lists lists = all_stages(ScheduleKind::one_f_one_b, p, m);
      lists[0] = warmup_one_short_on_stage0(p, m);
      const SimResult r = simulate(lists);
      if (p >= 3 && m >= 2) {
        EXPECT_FALSE(r.finished) << to_string(lists[0]);
        EXPECT_NE(r.problem.find("deadlock"), std::string::npos) << r.problem;
      } else {
        EXPECT_TRUE(r.finished) << r.problem;
      }
    }
  }
}

TEST(ScheduleDeadlockTest, SimulatorReportsOutOfOrderAndUnreceivedMessages) {
  // Stage 1 receives the activations in the wrong order.
  Lists swapped = all_stages(ScheduleKind::gpipe, 2, 2);
  swapped[1] = {{RA, 1}, {F, 1}, {RA, 0}, {F, 0}, {B, 0}, {SG, 0}, {B, 1}, {SG, 1}};
  SimResult r = simulate(swapped);
  EXPECT_FALSE(r.finished);
  EXPECT_NE(r.problem.find("instead"), std::string::npos) << r.problem;

  // Stage 0 sends an activation nobody receives.
  Lists extra = all_stages(ScheduleKind::one_f_one_b, 2, 1);
  extra[0].push_back({SA, 5});
  r = simulate(extra);
  EXPECT_FALSE(r.finished);
  EXPECT_NE(r.problem.find("unreceived"), std::string::npos) << r.problem;
}

}  // namespace
}  // namespace nupipe::parallel
