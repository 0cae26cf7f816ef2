// planner.cpp: per-stage costs, the DP over (stage, blocks placed) with Pareto fronts, and the
// evaluation of a given split.
#include "parallel/plan/planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

#include "runtime/check.h"
#include "runtime/error.h"

namespace nupipe::parallel {

RecomputeChoice parse_recompute_choice(const std::string& t) {
  if (t == "none") return RecomputeChoice::none;
  if (t == "full") return RecomputeChoice::full;
  if (t == "auto") return RecomputeChoice::automatic;
  throw usage_error("--recompute must be auto, none or full, got '" + t + "'",
                    "auto lets the planner choose per stage; full recomputes every block");
}

bool valid_split(const std::vector<int>& layers, int n_layer) {
  const int p = static_cast<int>(layers.size());
  int sum = 0;
  for (int s = 0; s < p; ++s) {
    if (layers[s] < 0 || (layers[s] == 0 && (p == 1 || (s > 0 && s + 1 < p)))) return false;
    sum += layers[s];
  }
  return p >= 1 && sum == n_layer;
}

std::vector<int> uniform_split(int pipeline, int n_layer) {
  return layer_counts(make_stage_layout({}, pipeline, n_layer));
}

namespace {

struct StageCost {
  StagePlan plan;
  int64_t total = 0;
  double forward_s = 0.0;  // of plan.time_s
  double weight_s = 0.0;   // of plan.time_s, W's share where the schedule splits the backward
};

// The parts of a stage's cost that do not depend on its recompute count, computed once:
// each (embedding?, head?, blocks) shape, and each stage's role (its schedule); and the
// schedule's replay.
class StageCosts {
 public:
  explicit StageCosts(const PlanInputs& in)
      : in_(in), replay_(in.cost.schedule, in.pipeline, in.cost.microbatches) {
    for (int s = 0; s < in.pipeline; ++s) {
      roles_.push_back(stage_role(in.cost.schedule, in.pipeline, s, in.cost.microbatches));
    }
  }

  // The s-th of p stages, with c blocks of which r recompute (computed once). Blocks are
  // alike, so where the stage's blocks sit does not matter, only how many.
  const StageCost& get(int s, int c, int r) {
    const int64_t n = in_.model.n_layer + 1;
    const int64_t key = (static_cast<int64_t>(s) * n + c) * n + r;
    auto known = known_.find(key);
    if (known == known_.end()) known = known_.emplace(key, compute(s, c, r)).first;
    return known->second;
  }

  const Replay& replay() const { return replay_; }
  int64_t replayed = 0, skipped = 0;  // evaluate_with's splits with these costs

 private:
  StageCost compute(int s, int c, int r) {
    const int p = in_.pipeline;
    const runtime::StageSlice slice{0, c, s == 0, s == p - 1};
    const auto key = std::make_tuple(slice.embedding, slice.head, c);
    auto it = shapes_.find(key);
    if (it == shapes_.end()) it = shapes_.emplace(key, stage_shape(in_.model, slice)).first;
    const StageShape& shape = it->second;
    StageCost out;
    out.plan.layers = c;
    out.plan.recompute = r;
    out.plan.params = shape.params;
    const auto wkey = std::make_pair(s, std::min(c, 2));
    auto w = workspace_.find(wkey);
    if (w == workspace_.end()) {
      const int64_t tokens = static_cast<int64_t>(in_.cost.micro_batch) * in_.model.seq_len;
      w = workspace_.emplace(wkey, stage_workspace_peak(in_.model, shape, roles_[s], tokens)).first;
    }
    out.plan.memory = stage_memory(in_.model, shape, roles_[s], in_.cost, r, w->second);
    out.total = out.plan.memory.total();
    const Device& d = in_.devices.at(s);
    if (d.passes.given()) {
      // Measured passes, as the executor's actions run them (planner.h, PassTimes).
      const PassTimes& t = d.passes;
      out.forward_s = c * t.block_forward + (slice.embedding ? t.embedding_forward : 0.0) +
                      (slice.head ? t.head : 0.0);
      double backward_s = r * t.block_forward;  // recomputation
      if (splits_backward(in_.cost.schedule)) {
        out.weight_s = c * t.block_weight + (slice.embedding ? t.embedding_backward : 0.0);
        backward_s += c * t.block_input + out.weight_s;
      } else {
        backward_s += c * t.block_backward + (slice.embedding ? t.embedding_backward : 0.0);
      }
      out.plan.time_s = out.forward_s + backward_s;
    } else {
      // FLOPs at the device's rate: forward a third of them without recomputation, backward
      // the rest, recomputation included; W (split schedules) the blocks' weight-gradient
      // GEMMs, as many FLOPs as their forward (the head's and embedding's W are left in B).
      const double others_flops =
          shape.others.flops_per_token * in_.cost.micro_batch * in_.model.seq_len;
      const double others_s = others_flops / d.flops_per_s;
      auto blocks_s = [&](int recompute) {
        return (stage_flops_per_microbatch(in_.model, shape, recompute, in_.cost.micro_batch) -
                others_flops) / d.flops_per_s;
      };
      out.forward_s = (blocks_s(0) + others_s) / 3.0;
      if (splits_backward(in_.cost.schedule)) out.weight_s = blocks_s(0) / 3.0;
      out.plan.time_s = blocks_s(r) + others_s;
    }
    out.plan.fits = out.total <= in_.devices.at(s).memory_bytes;
    return out;
  }

  const PlanInputs& in_;
  Replay replay_;
  std::unordered_map<int64_t, StageCost> known_;  // (stage, blocks, recompute)
  std::vector<StageRole> roles_;
  std::map<std::tuple<bool, bool, int>, StageShape> shapes_;
  std::map<std::pair<int, int>, int64_t> workspace_;  // (stage, min(blocks, 2))
};

Plan evaluate_with(const PlanInputs& in, StageCosts& costs, const std::vector<int>& layers,
                   const std::vector<int>& recompute,
                   double bound = std::numeric_limits<double>::infinity());

// A prefix of stages: the slowest stage's time, the sum of the stages' times and the peak so
// far, and how it was reached.
struct Entry {
  double time, sum;
  int64_t peak;
  int layers, recompute;  // of the last stage
  int parent;             // index in the previous front
};

// A Pareto front: the entries no other beats in all of time, sum and peak, in the order they
// were inserted (of equal ones the first). The three keys are also kept apart, in arrays the
// checks run through in blocks without a branch (vectorised: without a memory budget a front
// holds ~1,000 entries and a search makes millions of insertions). `hint`: the entry that last
// rejected one; the next candidate, made from a neighbour of the last, is most often beaten by
// it too, so it is tried first (the order of the checks changes nothing but their number).
class Front {
 public:
  const std::vector<Entry>& entries() const { return entries_; }

  void seed(const Entry& e) { append(e); }

  void insert(const Entry& e) {
    const size_t n = entries_.size();
    const double peak = static_cast<double>(e.peak);
    auto beats = [&](size_t i) {
      return (time_[i] <= e.time) & (sum_[i] <= e.sum) & (peak_[i] <= peak);
    };
    if ((hint_ < n && beats(hint_)) || any_of_block(n, beats)) return;
    auto beaten = [&](size_t i) {
      return (e.time <= time_[i]) & (e.sum <= sum_[i]) & (peak <= peak_[i]);
    };
    if (any_of_block(n, beaten, false)) {
      size_t kept = 0;
      for (size_t i = 0; i < n; ++i) {
        if (beaten(i)) continue;
        entries_[kept] = entries_[i];
        time_[kept] = time_[i];
        sum_[kept] = sum_[i];
        peak_[kept] = peak_[i];
        ++kept;
      }
      entries_.resize(kept);
      time_.resize(kept);
      sum_.resize(kept);
      peak_.resize(kept);
    }
    append(e);
  }

 private:
  // Whether pred(i) holds for some i < n, in blocks of 16 without a branch inside a block;
  // with `remember`, the first such i becomes the hint.
  template <class Pred>
  bool any_of_block(size_t n, Pred pred, bool remember = true) {
    constexpr size_t kBlock = 16;
    size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
      int any = 0;
      for (size_t j = i; j < i + kBlock; ++j) any |= static_cast<int>(pred(j));
      if (any) {
        if (remember) {
          for (size_t j = i;; ++j) {
            if (pred(j)) {
              hint_ = j;
              break;
            }
          }
        }
        return true;
      }
    }
    for (; i < n; ++i) {
      if (pred(i)) {
        if (remember) hint_ = i;
        return true;
      }
    }
    return false;
  }

  void append(const Entry& e) {
    entries_.push_back(e);
    time_.push_back(e.time);
    sum_.push_back(e.sum);
    peak_.push_back(static_cast<double>(e.peak));
  }

  std::vector<Entry> entries_;
  // peak_: bytes as doubles (exact below 2^53 bytes), so that all three compare in one go.
  std::vector<double> time_, sum_, peak_;
  size_t hint_ = 0;
};

// Splits a search may consider: the first prefix.size() stages hold exactly those blocks and
// the next one any count but `avoid` (none of it: every split).
struct SplitFilter {
  std::vector<int> prefix;
  int avoid = -1;
  bool allows(int s, int c) const {
    const size_t i = static_cast<size_t>(s);
    if (i < prefix.size()) return c == prefix[i];
    return !(i == prefix.size() && c == avoid);
  }
};

// The recompute count a stage of c blocks gets when a block moves to or from it: the fewest
// that fit its budget (recomputing more only lengthens its backward, and the step never
// shortens when a stage slows down), all of them when the peak is the objective, or what the
// choice fixes; -1 when none fits.
int stage_recompute(const PlanInputs& in, StageCosts& costs, bool respect_budget, int s, int c) {
  if (in.recompute == RecomputeChoice::none) return 0;
  if (in.recompute == RecomputeChoice::full || !respect_budget) return c;
  for (int r = 0; r <= c; ++r) {
    if (costs.get(s, c, r).plan.fits) return r;
  }
  return -1;
}

// The recompute counts the DP tries for a stage of c blocks. With the step as the objective,
// only the fewest that fit: recomputing more lengthens the stage, which never shortens the
// step, and only the peak could gain, which lower_peak_at_equal_step sees to afterwards (the
// fronts stay ~c times smaller: GPT-3 175B on 64 stages plans in seconds, not half a minute).
// With the peak as the objective, every count.
std::vector<int> recompute_options(const PlanInputs& in, StageCosts& costs, bool respect_budget,
                                   int s, int c) {
  if (in.recompute != RecomputeChoice::automatic || respect_budget) {
    const int r = stage_recompute(in, costs, respect_budget, s, c);
    return r < 0 ? std::vector<int>{} : std::vector<int>{r};
  }
  std::vector<int> all(static_cast<size_t>(c) + 1);
  for (int r = 0; r <= c; ++r) all[r] = r;
  return all;
}

// Recomputes more blocks on a stage of the plan where that lowers the peak and leaves the
// simulated step as it is (beats: equal steps, then the lower peak), one block at a time, the
// stage at the peak first, until no stage can.
void lower_peak_at_equal_step(const PlanInputs& in, StageCosts& costs, Plan& best) {
  if (in.recompute != RecomputeChoice::automatic) return;
  for (bool improved = true; improved;) {
    improved = false;
    for (int s = 0; s < in.pipeline && !improved; ++s) {
      if (costs.get(s, best.layers[s], best.recompute[s]).total != best.peak_bytes) continue;
      for (int r = best.recompute[s] + 1; r <= best.layers[s] && !improved; ++r) {
        std::vector<int> rc = best.recompute;
        rc[s] = r;
        Plan plan = evaluate_with(in, costs, best.layers, rc);
        if (plan.fits && beats(plan, best)) {
          best = std::move(plan);
          improved = true;
        }
      }
    }
  }
}

// Moves one block at a time from any stage to any other while the plan gets better (the
// simulated step, then the peak), each moved-from and moved-to stage with the recompute
// stage_recompute gives. What the DP's fronts could not tell apart (splits alike in slowest
// stage and sum but not in where the slow stages sit) the replay does.
void improve_locally(const PlanInputs& in, StageCosts& costs, bool respect_budget,
                     const SplitFilter& filter, Plan& best) {
  const int p = in.pipeline, L = in.model.n_layer;
  for (bool improved = true; improved;) {
    improved = false;
    for (int from = 0; from < p; ++from) {
      for (int to = 0; to < p; ++to) {
        if (to == from || best.layers[from] == 0) continue;
        std::vector<int> layers = best.layers, rc = best.recompute;
        --layers[from];
        ++layers[to];
        if (!valid_split(layers, L) || !filter.allows(from, layers[from]) ||
            !filter.allows(to, layers[to])) {
          continue;
        }
        rc[from] = stage_recompute(in, costs, respect_budget, from, layers[from]);
        rc[to] = stage_recompute(in, costs, respect_budget, to, layers[to]);
        if (rc[from] < 0 || rc[to] < 0) continue;
        Plan plan = evaluate_with(in, costs, layers, rc,
                                  respect_budget ? best.sim.step_s
                                                 : std::numeric_limits<double>::infinity());
        if ((!respect_budget || plan.fits) && beats(plan, best, !respect_budget)) {
          best = std::move(plan);
          improved = true;
        }
      }
    }
  }
}

// How many of the DP's best complete splits the local search starts from: on 819 random
// instances (NUPIPE_PLANNER_TRIALS=1500, tests/unit/test_planner.cpp) 1 start left 2 of them
// behind exhaustive search, 2 and 3 starts 1, 4 starts none.
constexpr int kLocalStarts = 4;

// The DP over (stage, blocks placed). The simulated step is not a sum of per-stage terms, so
// no DP over stages minimises it exactly; it grows with the slowest stage (the steady state
// runs at its pace) and with the sum of the stages (the fill and drain), about (m - 1) x
// slowest + sum under 1F1B and GPipe. The DP keeps every prefix no other beats in all of
// (slowest, sum, peak); the complete splits left are replayed by the simulator, the best
// `starts` of them improved by improve_locally, and the shortest step wins: a heuristic,
// measured against replaying every split in tests/unit/test_planner.cpp.
// `respect_budget` false: every stage counts as fitting, the objective becomes (peak, step).
std::optional<Plan> solve(const PlanInputs& in, bool respect_budget,
                          const SplitFilter& filter = {}, int starts = kLocalStarts) {
  const int p = in.pipeline, L = in.model.n_layer;
  NUPIPE_CHECK(static_cast<int>(in.devices.size()) == p, "planner: one device per stage");
  // front[s][u]: prefixes of s stages holding u blocks.
  std::vector<std::vector<Front>> front(p + 1, std::vector<Front>(L + 1));
  front[0][0].seed({0.0, 0.0, 0, 0, 0, -1});
  StageCosts costs(in);
  int64_t extended = 0;
  for (int s = 0; s < p; ++s) {
    const bool last = s == p - 1, may_be_empty = p > 1 && (s == 0 || last);
    for (int u = 0; u <= L; ++u) {
      const std::vector<Entry>& from = front[s][u].entries();
      if (from.empty()) continue;
      for (int c = may_be_empty ? 0 : 1; u + c <= L; ++c) {
        if ((last && u + c != L) || !filter.allows(s, c)) continue;
        for (int r : recompute_options(in, costs, respect_budget, s, c)) {
          const StageCost& sc = costs.get(s, c, r);
          if (respect_budget && !sc.plan.fits) continue;
          // The prefixes no slower and no fuller than this stage all become (its time, their
          // sum + its time, its peak): only the one of the least sum (the first of equal ones)
          // can stay on the front, the others are beaten by it or equal to it and later, so
          // they are not tried (the front comes out the same).
          const double t = sc.plan.time_s;
          size_t least = from.size();
          for (size_t i = 0; i < from.size(); ++i) {
            if (from[i].time <= t && from[i].peak <= sc.total &&
                (least == from.size() || from[i].sum < from[least].sum)) {
              least = i;
            }
          }
          Front& to = front[s + 1][u + c];
          for (size_t i = 0; i < from.size(); ++i) {
            const Entry& e = from[i];
            if (i != least && e.time <= t && e.peak <= sc.total) continue;
            ++extended;
            to.insert({std::max(e.time, t), e.sum + t, std::max(e.peak, sc.total), c, r,
                       static_cast<int>(i)});
          }
        }
      }
    }
  }
  const std::vector<Entry>& done = front[p][L].entries();
  std::vector<Plan> candidates;
  for (int i = 0; i < static_cast<int>(done.size()); ++i) {
    std::vector<int> layers(p), recompute(p);
    int u = L, idx = i;
    for (int s = p; s > 0; --s) {
      const Entry& e = front[s][u].entries()[idx];
      layers[s - 1] = e.layers;
      recompute[s - 1] = e.recompute;
      u -= e.layers;
      idx = e.parent;
    }
    candidates.push_back(evaluate_with(in, costs, layers, recompute));
  }
  if (candidates.empty()) return std::nullopt;
  std::stable_sort(candidates.begin(), candidates.end(), [&](const Plan& a, const Plan& b) {
    return beats(a, b, !respect_budget);
  });
  std::optional<Plan> best;
  for (size_t i = 0; i < std::min(static_cast<size_t>(starts), candidates.size()); ++i) {
    improve_locally(in, costs, respect_budget, filter, candidates[i]);
    if (!best || beats(candidates[i], *best, !respect_budget)) best = std::move(candidates[i]);
  }
  if (best && respect_budget) lower_peak_at_equal_step(in, costs, *best);
  if (best) {
    best->extended = extended;
    best->replayed = costs.replayed;
    best->skipped = costs.skipped;
  }
  return best;
}

// The plan of a split, with the stage costs of a search (evaluate()'s own otherwise). A split
// whose step is sure to exceed `bound` (Replay::lower_bound) is not replayed: its sim.step_s
// is +infinity.
Plan evaluate_with(const PlanInputs& in, StageCosts& costs, const std::vector<int>& layers,
                   const std::vector<int>& recompute, double bound) {
  NUPIPE_CHECK(static_cast<int>(layers.size()) == in.pipeline &&
                   valid_split(layers, in.model.n_layer),
               "planner: invalid split");
  Plan plan;
  plan.schedule = in.cost.schedule;
  plan.layers = layers;
  plan.recompute = recompute.empty() ? std::vector<int>(layers.size(), 0) : recompute;
  std::vector<StageTimes> times;
  for (int s = 0; s < in.pipeline; ++s) {
    const StageCost& sc = costs.get(s, layers[s], plan.recompute[s]);
    plan.stages.push_back(sc.plan);
    plan.fits = plan.fits && sc.plan.fits;
    plan.peak_bytes = std::max(plan.peak_bytes, sc.total);
    plan.bottleneck_s = std::max(plan.bottleneck_s, sc.plan.time_s);
    times.push_back({sc.forward_s, sc.plan.time_s - sc.forward_s, sc.weight_s});
  }
  // Transfers between stages: one microbatch's hidden state, fp32.
  const double hidden_bytes =
      4.0 * in.cost.micro_batch * in.model.seq_len * static_cast<double>(in.model.d_model);
  const double p2p_s = in.p2p_bytes_per_s > 0 ? hidden_bytes / in.p2p_bytes_per_s : 0.0;
  // After the pipeline, every stage reduces its gradients over the data replicas and steps
  // AdamW over its elements (its ZeRO-1 shard); the step ends when the slowest stage is done.
  const int dp = in.cost.data;
  double tail_s = 0.0;
  for (int s = 0; s < in.pipeline; ++s) {
    const StagePlan& st = plan.stages[s];
    const double reduce_s = in.net_bytes_per_s > 0 && dp > 1
                                ? 2.0 * (dp - 1) / dp * static_cast<double>(st.memory.params) /
                                      in.net_bytes_per_s
                                : 0.0;
    const double rate = in.devices[s].step_elements_per_s;
    const double optimizer_s = rate > 0 ? static_cast<double>(st.memory.optimizer / 8) / rate : 0.0;
    plan.reduce_s = std::max(plan.reduce_s, reduce_s);
    plan.optimizer_s = std::max(plan.optimizer_s, optimizer_s);
    tail_s = std::max(tail_s, reduce_s + optimizer_s);
  }
  if (bound < std::numeric_limits<double>::infinity() &&
      costs.replay().lower_bound(times, p2p_s, tail_s) > bound * (1.0 + 1e-9)) {
    plan.sim.step_s = std::numeric_limits<double>::infinity();
    ++costs.skipped;
    return plan;
  }
  plan.sim = costs.replay().run(times, p2p_s, tail_s);
  ++costs.replayed;
  return plan;
}

}  // namespace

bool beats(const Plan& a, const Plan& b, bool peak_first) {
  const double ta = a.sim.step_s, tb = b.sim.step_s;
  const bool tie = ta == tb || (std::isfinite(ta) && std::isfinite(tb) &&
                                std::abs(ta - tb) <= 1e-12 * std::max(ta, tb));
  return peak_first
             ? (a.peak_bytes < b.peak_bytes || (a.peak_bytes == b.peak_bytes && !tie && ta < tb))
             : ((!tie && ta < tb) || (tie && a.peak_bytes < b.peak_bytes));
}

Plan evaluate(const PlanInputs& in, const std::vector<int>& layers,
              const std::vector<int>& recompute) {
  StageCosts costs(in);
  Plan plan = evaluate_with(in, costs, layers, recompute);
  plan.replayed = 1;
  return plan;
}

std::optional<Plan> plan_best(const PlanInputs& in) {
  std::optional<Plan> p = solve(in, true);
  if (p) p->name = "auto";
  return p;
}

std::vector<std::optional<Plan>> plan_each_schedule(const PlanInputs& in,
                                                    const std::vector<int>& layers,
                                                    const std::vector<int>& recompute) {
  std::vector<std::optional<Plan>> out;
  for (const ScheduleInfo& info : schedules()) {
    PlanInputs each = in;
    each.cost.schedule = info.kind;
    std::optional<Plan> p;
    if (layers.empty()) {
      p = plan_best(each);
    } else {
      p = recompute.empty() ? plan_for_split(each, layers) : evaluate(each, layers, recompute);
      if (!p->fits) p.reset();
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::optional<Plan> fastest_plan(const std::vector<std::optional<Plan>>& plans) {
  std::optional<Plan> best;
  for (const std::optional<Plan>& p : plans) {
    if (p && (!best || beats(*p, *best))) best = p;
  }
  return best;
}

Plan plan_lowest_peak(const PlanInputs& in) {
  Plan p = *solve(in, false);
  p.name = "lowest peak";
  return p;
}

Plan plan_for_split(const PlanInputs& in, const std::vector<int>& layers) {
  std::vector<int> rc(layers.size(), 0);
  StageCosts costs(in);
  for (size_t s = 0; s < layers.size(); ++s) {
    if (in.recompute == RecomputeChoice::full) rc[s] = layers[s];
    if (in.recompute != RecomputeChoice::automatic) continue;
    rc[s] = layers[s];
    for (int r = 0; r <= layers[s]; ++r) {
      if (costs.get(static_cast<int>(s), layers[s], r).plan.fits) {
        rc[s] = r;
        break;
      }
    }
  }
  Plan plan = evaluate_with(in, costs, layers, rc);
  plan.replayed = 1;
  return plan;
}

// Lawler's partition of every split but `best`'s: those that first differ from it at stage i,
// for each i. The best of each part is one DP, and the best of those is the second-best split.
std::optional<Plan> runner_up(const PlanInputs& in, const Plan& best) {
  std::optional<Plan> out;
  int64_t extended = 0, replayed = 0, skipped = 0;
  for (int i = 0; i + 1 < in.pipeline; ++i) {  // the last stage's count follows from the rest
    const SplitFilter filter{{best.layers.begin(), best.layers.begin() + i}, best.layers[i]};
    std::optional<Plan> p = solve(in, true, filter, 1);  // p - 1 searches: one start each
    if (!p) continue;
    extended += p->extended;
    replayed += p->replayed;
    skipped += p->skipped;
    if (!out || beats(*p, *out)) out = std::move(p);
  }
  if (out) {
    out->name = "runner-up";
    out->extended = extended;
    out->replayed = replayed;
    out->skipped = skipped;
  }
  return out;
}

}  // namespace nupipe::parallel
