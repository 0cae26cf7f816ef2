// planner.cpp: per-stage costs, the DP over (stage, blocks placed) with Pareto fronts, and the
// evaluation of a given split.
#include "parallel/plan/planner.h"

#include <algorithm>
#include <limits>
#include <map>

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
};

// The parts of a stage's cost that do not depend on its recompute count, computed once:
// each (embedding?, head?, blocks) shape, and each stage's role (its schedule).
class StageCosts {
 public:
  explicit StageCosts(const PlanInputs& in) : in_(in) {
    for (int s = 0; s < in.pipeline; ++s) {
      roles_.push_back(stage_role(in.cost.schedule, in.pipeline, s, in.cost.microbatches));
    }
  }

  // The s-th of p stages, with c blocks of which r recompute. Blocks are alike, so where the
  // stage's blocks sit does not matter, only how many.
  StageCost get(int s, int c, int r) {
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
    // Forward is a third of the FLOPs without recomputation; backward the rest, recomputation
    // included. Blocks and the other layers (embedding, head) at their own rates.
    const Device& d = in_.devices.at(s);
    const double others_flops =
        shape.others.flops_per_token * in_.cost.micro_batch * in_.model.seq_len;
    const double others_s = others_flops / d.others_rate();
    auto blocks_s = [&](int recompute) {
      return (stage_flops_per_microbatch(in_.model, shape, recompute, in_.cost.micro_batch) -
              others_flops) / d.flops_per_s;
    };
    out.forward_s = (blocks_s(0) + others_s) / 3.0;
    out.plan.time_s = blocks_s(r) + others_s;
    out.plan.fits = out.total <= in_.devices.at(s).memory_bytes;
    return out;
  }

 private:
  const PlanInputs& in_;
  std::vector<StageRole> roles_;
  std::map<std::tuple<bool, bool, int>, StageShape> shapes_;
  std::map<std::pair<int, int>, int64_t> workspace_;  // (stage, min(blocks, 2))
};

std::vector<int> recompute_options(RecomputeChoice choice, int c) {
  switch (choice) {
    case RecomputeChoice::none: return {0};
    case RecomputeChoice::full: return {c};
    case RecomputeChoice::automatic: break;
  }
  std::vector<int> all(static_cast<size_t>(c) + 1);
  for (int r = 0; r <= c; ++r) all[r] = r;
  return all;
}

// A prefix of stages: the slowest time and the peak so far, and how it was reached.
struct Entry {
  double time;
  int64_t peak;
  int layers, recompute;  // of the last stage
  int parent;             // index in the previous front
};

// Keeps entries no other entry beats in both time and peak.
void insert(std::vector<Entry>& front, const Entry& e) {
  for (const Entry& f : front) {
    if (f.time <= e.time && f.peak <= e.peak) return;
  }
  front.erase(std::remove_if(front.begin(), front.end(),
                             [&](const Entry& f) { return e.time <= f.time && e.peak <= f.peak; }),
              front.end());
  front.push_back(e);
}

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

// The DP; `respect_budget` false: every stage counts as fitting, the objective becomes
// (peak, time).
std::optional<Plan> solve(const PlanInputs& in, bool respect_budget,
                          const SplitFilter& filter = {}) {
  const int p = in.pipeline, L = in.model.n_layer;
  NUPIPE_CHECK(static_cast<int>(in.devices.size()) == p, "planner: one device per stage");
  // front[s][u]: prefixes of s stages holding u blocks.
  std::vector<std::vector<std::vector<Entry>>> front(
      p + 1, std::vector<std::vector<Entry>>(L + 1));
  front[0][0].push_back({0.0, 0, 0, 0, -1});
  StageCosts costs(in);
  for (int s = 0; s < p; ++s) {
    const bool last = s == p - 1, may_be_empty = p > 1 && (s == 0 || last);
    for (int u = 0; u <= L; ++u) {
      if (front[s][u].empty()) continue;
      for (int c = may_be_empty ? 0 : 1; u + c <= L; ++c) {
        if ((last && u + c != L) || !filter.allows(s, c)) continue;
        for (int r : recompute_options(in.recompute, c)) {
          const StageCost sc = costs.get(s, c, r);
          if (respect_budget && !sc.plan.fits) continue;
          for (size_t i = 0; i < front[s][u].size(); ++i) {
            const Entry& e = front[s][u][i];
            insert(front[s + 1][u + c], {std::max(e.time, sc.plan.time_s),
                                         std::max(e.peak, sc.total), c, r, static_cast<int>(i)});
          }
        }
      }
    }
  }
  const std::vector<Entry>& done = front[p][L];
  if (done.empty()) return std::nullopt;
  auto better = [&](const Entry& a, const Entry& b) {
    return respect_budget ? (a.time < b.time || (a.time == b.time && a.peak < b.peak))
                          : (a.peak < b.peak || (a.peak == b.peak && a.time < b.time));
  };
  int best = 0;
  for (int i = 1; i < static_cast<int>(done.size()); ++i) {
    if (better(done[i], done[best])) best = i;
  }
  std::vector<int> layers(p), recompute(p);
  int u = L, idx = best;
  for (int s = p; s > 0; --s) {
    const Entry& e = front[s][u][idx];
    layers[s - 1] = e.layers;
    recompute[s - 1] = e.recompute;
    u -= e.layers;
    idx = e.parent;
  }
  return evaluate(in, layers, recompute);
}

}  // namespace

Plan evaluate(const PlanInputs& in, const std::vector<int>& layers,
              const std::vector<int>& recompute) {
  NUPIPE_CHECK(static_cast<int>(layers.size()) == in.pipeline &&
                   valid_split(layers, in.model.n_layer),
               "planner: invalid split");
  Plan plan;
  plan.layers = layers;
  plan.recompute = recompute.empty() ? std::vector<int>(layers.size(), 0) : recompute;
  std::vector<StageTimes> times;
  StageCosts costs(in);
  for (int s = 0; s < in.pipeline; ++s) {
    const StageCost sc = costs.get(s, layers[s], plan.recompute[s]);
    plan.stages.push_back(sc.plan);
    plan.fits = plan.fits && sc.plan.fits;
    plan.peak_bytes = std::max(plan.peak_bytes, sc.total);
    plan.bottleneck_s = std::max(plan.bottleneck_s, sc.plan.time_s);
    times.push_back({sc.forward_s, sc.plan.time_s - sc.forward_s});
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
    const double rate = in.devices[s].adamw_elements_per_s;
    const double optimizer_s = rate > 0 ? static_cast<double>(st.memory.optimizer / 8) / rate : 0.0;
    plan.reduce_s = std::max(plan.reduce_s, reduce_s);
    plan.optimizer_s = std::max(plan.optimizer_s, optimizer_s);
    tail_s = std::max(tail_s, reduce_s + optimizer_s);
  }
  plan.sim = simulate(in.cost.schedule, times, in.cost.microbatches, p2p_s, tail_s);
  return plan;
}

std::optional<Plan> plan_best(const PlanInputs& in) {
  std::optional<Plan> p = solve(in, true);
  if (p) p->name = "auto";
  return p;
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
  return evaluate(in, layers, rc);
}

// Lawler's partition of every split but `best`'s: those that first differ from it at stage i,
// for each i. The best of each part is one DP, and the best of those is the second-best split.
std::optional<Plan> runner_up(const PlanInputs& in, const Plan& best) {
  std::optional<Plan> out;
  for (int i = 0; i + 1 < in.pipeline; ++i) {  // the last stage's count follows from the rest
    const SplitFilter filter{{best.layers.begin(), best.layers.begin() + i}, best.layers[i]};
    std::optional<Plan> p = solve(in, true, filter);
    if (p && (!out || p->bottleneck_s < out->bottleneck_s ||
              (p->bottleneck_s == out->bottleneck_s && p->peak_bytes < out->peak_bytes))) {
      out = std::move(p);
    }
  }
  if (out) out->name = "runner-up";
  return out;
}

}  // namespace nupipe::parallel
