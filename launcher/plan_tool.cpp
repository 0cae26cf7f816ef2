// plan_tool.cpp: argument resolution, the plans, and their table or JSON.
#include "launcher/plan_tool.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "launcher/calibrate.h"
#include "launcher/config.h"
#include "parallel/plan/planner.h"
#include "runtime/allocator.h"
#include "runtime/stage_model.h"
#include "runtime/error.h"

namespace nupipe::launcher {

namespace {

std::vector<double> number_list(const std::string& text, const char* option) {
  std::vector<double> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      size_t used = 0;
      const double v = std::stod(item, &used);
      if (used != item.size() || !(v > 0)) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw usage_error(std::string(option) + " " + text + ": '" + item +
                            "' is not a positive number",
                        std::string("write one number, or one per stage separated by commas, "
                                    "e.g. ") + option + " 80,80,40,40");
    }
  }
  if (out.empty()) throw usage_error(std::string(option) + " needs a value");
  return out;
}

// One value for every stage, or exactly one per stage.
std::vector<double> per_stage(const std::vector<double>& v, int p, const char* option) {
  if (v.size() == 1) return std::vector<double>(p, v[0]);
  if (static_cast<int>(v.size()) != p) {
    throw usage_error(std::string(option) + " gives " + std::to_string(v.size()) +
                          " values for " + std::to_string(p) + " pipeline stages",
                      "give one value for all stages or one per stage");
  }
  return v;
}

// What the figures of a plan can claim: budgets only where given, absolute times only with a
// throughput (--tflops, runtime.tflops / [[runtime.devices]], or --calibrate).
struct Knowns {
  bool budget = false;      // some stage has a memory budget
  bool throughput = false;  // stage times are seconds, not only ratios
  // Without a throughput every device runs at runtime.tflops' default: times are then shown in
  // units of one block's forward + backward of one microbatch, the same unit for every plan.
  double unit_s = 1.0;
};

bool has_budget(const parallel::PlanInputs& in, size_t stage) {
  return in.devices[stage].memory_bytes != INT64_MAX;
}

// Throughput figures of a plan: tokens/s, MFU over the dense peak, cost per million tokens.
struct Economics {
  double tokens_per_s = 0, mfu = 0, usd_per_mtok = 0;
};

Economics economics(const parallel::Plan& plan, const parallel::PlanInputs& in,
                    const PlanCommand& cmd) {
  Economics e;
  const double tokens = static_cast<double>(in.cost.micro_batch) * in.model.seq_len *
                        in.cost.microbatches * in.cost.data;
  const double step = std::max(plan.sim.step_s, 1e-30);
  e.tokens_per_s = tokens / step;
  double flops_per_token = 0;  // model FLOPs (no recompute), forward + backward
  for (const auto& [name, c] :
       runtime::stage_costs(in.model, runtime::StageSlice::whole(in.model))) {
    flops_per_token += c.flops_per_token;
  }
  const int devices = in.pipeline * in.cost.data;
  double peak = 0;
  for (const parallel::Device& d : in.devices) {
    peak += (cmd.peak_tflops > 0 ? cmd.peak_tflops * 1e12 : d.flops_per_s) * in.cost.data;
  }
  e.mfu = flops_per_token * e.tokens_per_s / peak;
  if (cmd.gpu_hour_usd > 0) {
    e.usd_per_mtok = cmd.gpu_hour_usd * devices * step / 3600.0 / (tokens / 1e6);
  }
  return e;
}

// "fits", "does NOT fit", or "no budget given" when no stage has one.
const char* verdict(const parallel::Plan& plan, const Knowns& k) {
  if (!k.budget) return "no budget given";
  return plan.fits ? "fits" : "does NOT fit";
}

void print_plan(const parallel::Plan& plan, const parallel::PlanInputs& in,
                const PlanCommand& cmd, const Knowns& k) {
  using runtime::format_bytes;
  std::printf("%s: stage_layers %s, recompute %s\n", plan.name.c_str(),
              parallel::format_list(plan.layers).c_str(), parallel::format_list(plan.recompute).c_str());
  const double unit = k.unit_s;
  // What B keeps for W: a column only under a schedule that splits the backward.
  const bool split = parallel::splits_backward(in.cost.schedule);
  std::printf("  %-5s %6s %9s %12s %11s %11s %11s %11s %11s %11s%s %11s %11s %9s\n", "stage",
              "layers", "recompute", "params", "params B", "grads B", "optim B", "activ. B",
              "workspace", "loss ws", split ? "    W inputs" : "", "peak", "budget",
              k.throughput ? "time ms" : "time");
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const parallel::StagePlan& st = plan.stages[s];
    const std::string w = split ? " " + fmt::format("{:>11}", format_bytes(st.memory.weight_inputs))
                                : std::string();
    std::printf("  %-5zu %6d %9d %12lld %11s %11s %11s %11s %11s %11s%s %11s %11s %9.2f%s\n", s,
                st.layers, st.recompute, static_cast<long long>(st.params),
                format_bytes(st.memory.params).c_str(), format_bytes(st.memory.grads).c_str(),
                format_bytes(st.memory.optimizer).c_str(),
                format_bytes(st.memory.activations).c_str(),
                format_bytes(st.memory.workspace).c_str(),
                format_bytes(st.memory.loss_workspace).c_str(), w.c_str(),
                format_bytes(st.memory.total()).c_str(),
                has_budget(in, s) ? format_bytes(in.devices[s].memory_bytes).c_str() : "none",
                k.throughput ? st.time_s * 1e3 : st.time_s / unit,
                st.fits ? "" : "  over budget");
  }
  if (!k.throughput) {
    std::printf("  step %.2f units (simulated, %d microbatches), bubble %.1f%%, slowest stage "
                "%.2f units, peak %s: %s\n\n",
                plan.sim.step_s / unit, in.cost.microbatches, 100.0 * plan.sim.bubble_fraction,
                plan.bottleneck_s / unit, format_bytes(plan.peak_bytes).c_str(), verdict(plan, k));
    return;
  }
  const Economics e = economics(plan, in, cmd);
  std::printf("  step %.2f ms (simulated, %d microbatches%s), bubble %.1f%%, slowest stage %.2f "
              "ms, peak %s: %s\n",
              plan.sim.step_s * 1e3, in.cost.microbatches,
              (std::string(plan.reduce_s > 0 ? fmt::format(", gradient reduction {:.2f} ms",
                                                           plan.reduce_s * 1e3)
                                               : "") +
               (plan.optimizer_s > 0 ? fmt::format(", AdamW {:.2f} ms", plan.optimizer_s * 1e3)
                                     : ""))
                  .c_str(),
              100.0 * plan.sim.bubble_fraction, plan.bottleneck_s * 1e3,
              format_bytes(plan.peak_bytes).c_str(), verdict(plan, k));
  std::printf("  %.0f tokens/s, MFU %.1f%%%s\n\n", e.tokens_per_s, 100.0 * e.mfu,
              cmd.gpu_hour_usd > 0 ? fmt::format(", ${:.4f} per million tokens", e.usd_per_mtok).c_str()
                                   : "");
}

// A value, or null where the inputs do not support it.
template <class T>
nlohmann::json known(bool ok, T value) {
  return ok ? nlohmann::json(value) : nlohmann::json();
}

nlohmann::json plan_json(const parallel::Plan& plan, const parallel::PlanInputs& in,
                         const PlanCommand& cmd, const Knowns& k) {
  nlohmann::json stages = nlohmann::json::array();
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const parallel::StagePlan& st = plan.stages[s];
    const bool budget = has_budget(in, s);
    stages.push_back({{"layers", st.layers},
                      {"budget_bytes", known(budget, in.devices[s].memory_bytes)},
                      {"recompute", st.recompute},
                      {"params", st.params},
                      {"peak_bytes", st.memory.total()},
                      {"fits", known(budget, st.fits)},
                      {"bytes", {{"params", st.memory.params},
                                 {"grads", st.memory.grads},
                                 {"optimizer", st.memory.optimizer},
                                 {"activations", st.memory.activations},
                                 {"workspace", st.memory.workspace},
                                 {"loss_workspace", st.memory.loss_workspace},
                                 {"weight_inputs", st.memory.weight_inputs}}},
                      {"time_ms", known(k.throughput, st.time_s * 1e3)},
                      {"time_units", known(!k.throughput, st.time_s / k.unit_s)}});
  }
  const Economics e = economics(plan, in, cmd);
  return {{"name", plan.name},
          {"stage_layers", plan.layers},
          {"recompute", plan.recompute},
          {"fits", known(k.budget, plan.fits)},
          {"peak_bytes", plan.peak_bytes},
          {"step_ms", known(k.throughput, plan.sim.step_s * 1e3)},
          {"step_units", known(!k.throughput, plan.sim.step_s / k.unit_s)},
          {"bubble_fraction", plan.sim.bubble_fraction},
          {"stages", stages},
          {"reduce_ms", known(k.throughput, plan.reduce_s * 1e3)},
          {"optimizer_ms", known(k.throughput, plan.optimizer_s * 1e3)},
          {"tokens_per_s", known(k.throughput, e.tokens_per_s)},
          {"mfu", known(k.throughput, e.mfu)},
          {"usd_per_million_tokens", known(k.throughput && cmd.gpu_hour_usd > 0, e.usd_per_mtok)},
          {"search", {{"extended", plan.extended}, {"replayed", plan.replayed},
                      {"skipped", plan.skipped}}}};
}

}  // namespace

// Each schedule's best plan within the budgets (none: no split fits under it), side by side,
// in the order of parallel::schedules().
void print_schedules(const std::vector<std::optional<parallel::Plan>>& each,
                     const parallel::PlanInputs& in, const Knowns& k) {
  using runtime::format_bytes;
  const std::optional<parallel::Plan> fastest = parallel::fastest_plan(each);
  std::printf("every schedule, each with its own best split within the budgets (parallel.schedule "
              "= %s here):\n", parallel::schedule_name(in.cost.schedule));
  std::printf("  %-8s %-24s %-24s %12s %7s  %s\n", "schedule", "stage_layers", "recompute",
              k.throughput ? "step ms" : "step units", "bubble", "peak per stage");
  for (size_t i = 0; i < each.size(); ++i) {
    const char* name = parallel::schedules()[i].name;
    if (!each[i]) {
      std::printf("  %-8s no split fits\n", name);
      continue;
    }
    const parallel::Plan& p = *each[i];
    // Up to 8 stages the lists and every stage's peak; beyond, the largest peak (--json has all).
    const bool wide = p.stages.size() > 8;
    std::string peaks = wide ? "largest " + format_bytes(p.peak_bytes) : "";
    for (const parallel::StagePlan& st : p.stages) {
      if (!wide) peaks += (peaks.empty() ? "" : " / ") + format_bytes(st.memory.total());
    }
    const std::string layers = wide ? "(--json)" : parallel::format_list(p.layers);
    const std::string recompute = wide ? "(--json)" : parallel::format_list(p.recompute);
    std::printf("  %-8s %-24s %-24s %12.2f %6.1f%%  %s%s\n", name,
                layers.c_str(), recompute.c_str(),
                k.throughput ? p.sim.step_s * 1e3 : p.sim.step_s / k.unit_s,
                100.0 * p.sim.bubble_fraction, peaks.c_str(),
                fastest && fastest->schedule == p.schedule ? "  <- fastest" : "");
  }
  std::printf("\n");
}

int run_plan(const PlanCommand& cmd) {
  const Config cfg = load_config(cmd.config_path, cmd.overrides);
  parallel::PlanInputs in;
  in.model = model_that_runs(cfg);
  const int dp = cfg.parallel.data;
  in.pipeline = cfg.parallel.pipeline;
  if (cmd.world_size > 0) {
    if (cmd.world_size % dp != 0) {
      throw usage_error("--world-size " + std::to_string(cmd.world_size) +
                            " is not a multiple of parallel.data = " + std::to_string(dp),
                        "choose a multiple, or set parallel.data with --set");
    }
    in.pipeline = cmd.world_size / dp;
  }
  if (in.pipeline > in.model.n_layer + 2) {
    throw usage_error(std::to_string(in.pipeline) + " stages for " +
                          std::to_string(in.model.n_layer) + " blocks: at most n_layer + 2",
                      "lower --world-size or raise parallel.data");
  }
  // parallel.schedule = "auto": 1F1B until the devices are known, then the fastest (below).
  const bool auto_schedule = cfg.parallel.schedule == "auto";
  in.cost = {dp, cfg.parallel.zero,
             auto_schedule ? parallel::ScheduleKind::one_f_one_b
                           : parallel::parse_schedule_kind(cfg.parallel.schedule),
             cfg.microbatches(), cfg.train.micro_batch, {}};

  // Recompute: --recompute, else the config's train.recompute ("none", "full", "auto"; blocks
  // per stage apply to the config's own split, and the planner then chooses for its own).
  using RK = parallel::RecomputeSpec::Kind;
  const parallel::RecomputeSpec& rc = cfg.train.recompute;
  const bool same_stages = in.pipeline == cfg.parallel.pipeline;
  std::string recompute_text;
  if (!cmd.recompute.empty()) {
    in.recompute = parallel::parse_recompute_choice(cmd.recompute);
    recompute_text = cmd.recompute + " (--recompute)";
  } else {
    in.recompute = rc.kind == RK::none   ? parallel::RecomputeChoice::none
                   : rc.kind == RK::full ? parallel::RecomputeChoice::full
                                         : parallel::RecomputeChoice::automatic;
    recompute_text = parallel::format_recompute(rc) + " (train.recompute" +
                     (rc.kind == RK::per_stage
                          ? std::string(same_stages ? " for the config's split; the planner "
                                                      "chooses for its own"
                                                    : ", for another number of stages: the "
                                                      "planner chooses")
                          : std::string()) +
                     ")";
  }
  in.p2p_bytes_per_s = cmd.p2p_gbps * 1e9;
  in.net_bytes_per_s = cmd.net_gbps * 1e9;
  // Without --memory-gib / --tflops, the config's runtime.memory_gib and runtime.tflops (or its
  // [[runtime.devices]]); memory 0 there means no budget here.
  const std::vector<double> gib = per_stage(
      cmd.memory_gib.empty() ? cfg.runtime.memory_gib : number_list(cmd.memory_gib, "--memory-gib"),
      in.pipeline, cmd.memory_gib.empty() ? "runtime.memory_gib" : "--memory-gib");
  Knowns knowns;
  knowns.throughput = !cmd.tflops.empty() || cmd.calibrate || !cmd.calibration.empty() ||
                      cfg.is_given("runtime.tflops");
  if (!knowns.throughput) {
    // runtime.tflops' default only makes equal devices equal: seconds from it would be fiction.
    for (const auto& [given, option] : {std::pair{cmd.p2p_gbps > 0, "--p2p-gbps"},
                                        {cmd.net_gbps > 0, "--net-gbps"},
                                        {cmd.peak_tflops > 0, "--peak-tflops"},
                                        {cmd.gpu_hour_usd > 0, "--gpu-hour-usd"}}) {
      if (given) {
        throw usage_error(std::string(option) + " needs the devices' throughput: without it "
                              "nupipe plan gives stage and step times only relative to the "
                              "slowest stage",
                          "add --tflops N (or runtime.tflops / [[runtime.devices]] in the "
                          "config), or --calibrate to time the layers on this machine");
      }
    }
  }
  std::vector<double> tflops = cmd.tflops.empty() ? cfg.runtime.tflops
                                                  : number_list(cmd.tflops, "--tflops");
  Calibration calibration;  // none: every layer at --tflops, the optimizer left out
  if (cmd.calibrate || !cmd.calibration.empty()) {
    if (!cmd.tflops.empty()) {
      throw usage_error("--calibrate / --calibration give the throughput: they replace --tflops",
                        "give one of them and --tflops");
    }
    if (std::adjacent_find(tflops.begin(), tflops.end(), std::not_equal_to<>()) != tflops.end()) {
      throw usage_error("--calibrate / --calibration time every stage by this machine's passes, "
                        "but the config's runtime.tflops gives stages of different speeds",
                        "plan by runtime.tflops without them, or give the stages one speed");
    }
    if (cmd.calibrate && !cmd.calibration.empty()) {
      throw usage_error("--calibrate times the passes, --calibration reads them from a file",
                        "give one of them");
    }
    const int threads = cfg.runtime.threads > 0 ? cfg.runtime.threads : 1;
    const CalibrationShape shape{in.model, cfg.train.micro_batch, threads};
    calibration = cmd.calibrate ? calibrate(in.model, cfg.train.micro_batch, threads)
                                : load_calibration(cmd.calibration, shape);
    if (!cmd.save_calibration.empty()) save_calibration(cmd.save_calibration, calibration, shape);
    // The FLOP rate a block's measured forward + backward implies: what `--tflops` would be
    // (the unit of the relative figures; the stage times come from the passes themselves).
    const double block_s = calibration.passes.block_forward + calibration.passes.block_backward;
    tflops = {runtime::block_cost(in.model).flops_per_token * cfg.train.micro_batch *
              in.model.seq_len / std::max(block_s, 1e-12) / 1e12};
    const std::string from = cmd.calibrate ? "" : "from " + cmd.calibration + ": ";
    std::fprintf(cmd.json ? stderr : stdout, "%s%s\n\n", from.c_str(),
                 describe(calibration, threads, cfg.train.micro_batch).c_str());
  } else if (!cmd.save_calibration.empty()) {
    throw usage_error("--save-calibration writes what --calibrate measures", "add --calibrate");
  }
  tflops = per_stage(tflops, in.pipeline, cmd.tflops.empty() ? "runtime.tflops" : "--tflops");
  for (int s = 0; s < in.pipeline; ++s) {
    in.devices.push_back({gib[s] > 0 ? static_cast<int64_t>(gib[s] * (1ull << 30)) : INT64_MAX,
                          tflops[s] * 1e12, calibration.step_elements_per_s,
                          calibration.passes});
    knowns.budget = knowns.budget || gib[s] > 0;
  }
  if (!knowns.throughput) {
    knowns.unit_s = runtime::block_cost(in.model).flops_per_token * cfg.train.micro_batch *
                    in.model.seq_len / in.devices[0].flops_per_s;
  }

  // Every schedule's own best plan (for "auto" and the side-by-side table), planned once.
  const std::vector<std::optional<parallel::Plan>> each_schedule = parallel::plan_each_schedule(in);
  if (auto_schedule) {
    if (const std::optional<parallel::Plan> fastest = parallel::fastest_plan(each_schedule)) {
      in.cost.schedule = fastest->schedule;
    }
  }
  std::vector<parallel::Plan> plans;
  // The chosen schedule's best plan is already among them: planning it again would redo the
  // whole search (a fifth of the command's time).
  std::optional<parallel::Plan> best;
  for (size_t i = 0; i < each_schedule.size(); ++i) {
    if (parallel::schedules()[i].kind == in.cost.schedule) best = each_schedule[i];
  }
  // The uniform and --compare splits recompute every block with recompute full, none
  // otherwise (with auto the planner's own choice is in its plan).
  auto recompute_for = [&](const std::vector<int>& layers) {
    if (in.recompute == parallel::RecomputeChoice::full) return layers;
    return std::vector<int>(layers.size(), 0);
  };
  // The config's own split (an explicit parallel.stage_layers, or "uniform") with its own
  // train.recompute, as `nupipe train` would run it: the uniform plan, or one named "config".
  const std::vector<int> uniform_counts = parallel::uniform_split(in.pipeline, in.model.n_layer);
  std::optional<std::vector<int>> config_layers;
  using SK = parallel::StageLayersSpec::Kind;
  if (same_stages && cfg.parallel.stage_layers.kind != SK::automatic) {
    config_layers = cfg.parallel.stage_layers.kind == SK::explicit_list
                        ? cfg.parallel.stage_layers.layers
                        : uniform_counts;
  }
  auto config_recompute = [&](const std::vector<int>& layers) {
    if (cmd.recompute.empty() && rc.kind == RK::per_stage) return rc.blocks;
    return recompute_for(layers);
  };
  if (best) plans.push_back(*best);
  parallel::Plan uniform = parallel::evaluate(
      in, uniform_counts,
      config_layers == uniform_counts ? config_recompute(uniform_counts)
                                      : recompute_for(uniform_counts));
  uniform.name = "uniform";
  plans.push_back(uniform);
  if (config_layers && *config_layers != uniform_counts) {
    parallel::Plan c = parallel::evaluate(in, *config_layers, config_recompute(*config_layers));
    c.name = "config";
    plans.push_back(c);
  }
  if (!cmd.compare.empty()) {
    std::vector<int> layers;
    for (double v : number_list(cmd.compare, "--compare")) layers.push_back(static_cast<int>(v));
    if (static_cast<int>(layers.size()) != in.pipeline ||
        !parallel::valid_split(layers, in.model.n_layer)) {
      throw usage_error("--compare " + cmd.compare + " is not a split of " +
                            std::to_string(in.model.n_layer) + " blocks over " +
                            std::to_string(in.pipeline) + " stages",
                        "one entry per stage, summing to model.n_layer, middle stages >= 1");
    }
    parallel::Plan c = parallel::evaluate(in, layers, recompute_for(layers));
    c.name = "compare";
    plans.push_back(c);
  }

  if (cmd.json) {
    nlohmann::json j;
    j["plans"] = nlohmann::json::array();
    for (const parallel::Plan& p : plans) j["plans"].push_back(plan_json(p, in, cmd, knowns));
    j["budget_given"] = knowns.budget;
    j["throughput_given"] = knowns.throughput;
    j["time_unit"] = knowns.throughput ? nlohmann::json("ms")
                                       : nlohmann::json("one block's forward + backward of one "
                                                        "microbatch");
    j["fits"] = known(knowns.budget, best.has_value());
    j["schedules"] = nlohmann::json::array();
    for (size_t i = 0; i < each_schedule.size(); ++i) {
      const std::optional<parallel::Plan>& p = each_schedule[i];
      j["schedules"].push_back({{"schedule", parallel::schedules()[i].name},
                                {"fits", known(knowns.budget, p.has_value())},
                                {"plan", p ? plan_json(*p, in, cmd, knowns) : nlohmann::json()}});
    }
    if (!best) j["lowest_peak"] = plan_json(parallel::plan_lowest_peak(in), in, cmd, knowns);
    std::printf("%s\n", j.dump(1).c_str());
    return best ? 0 : static_cast<int>(ExitCode::usage);
  }
  std::printf("nupipe plan %s: %d layers, d_model %d, %d stages x %d replicas, %s, %d "
              "microbatches of %d, ZeRO-%d, recompute %s\n",
              cmd.config_path.c_str(), in.model.n_layer, in.model.d_model, in.pipeline, dp,
              (std::string(parallel::schedule_name(in.cost.schedule)) +
               (auto_schedule ? " (parallel.schedule = \"auto\": the fastest that fits)" : ""))
                  .c_str(),
              in.cost.microbatches, in.cost.micro_batch,
              in.cost.zero, recompute_text.c_str());
  if (!knowns.budget) {
    std::printf("memory: no budget given (--memory-gib, runtime.memory_gib or "
                "[[runtime.devices]]): the peaks are predicted, not checked against one; "
                "`nupipe train` without one holds each rank to the host's available memory "
                "divided by the ranks on the host\n");
  }
  if (!knowns.throughput) {
    std::printf("time: no device throughput given, so times are relative, in units of one "
                "block's forward + backward of one microbatch, and there is no tokens/s or MFU; "
                "--tflops N (or runtime.tflops / [[runtime.devices]]) gives absolute figures, "
                "--calibrate measures this machine's cpu backend\n");
  }
  std::printf("\n");
  for (const parallel::Plan& p : plans) print_plan(p, in, cmd, knowns);
  if (in.pipeline > 1) print_schedules(each_schedule, in, knowns);
  if (!best) {
    parallel::Plan low = parallel::plan_lowest_peak(in);
    int64_t over = 0;
    for (size_t s = 0; s < low.stages.size(); ++s) {
      over = std::max(over, low.stages[s].memory.total() - in.devices[s].memory_bytes);
    }
    std::printf("nothing fits: the split with the lowest peak, %s, is %s over its budget on its "
                "fullest stage.\n",
                parallel::format_list(low.layers).c_str(), runtime::format_bytes(over).c_str());
    std::printf("what would: %s%s, a smaller train.micro_batch (more microbatches), or more "
                "pipeline stages (--world-size)\n",
                in.recompute == parallel::RecomputeChoice::none ? "--recompute auto, " : "",
                cfg.parallel.zero == 0 && dp > 1 ? "parallel.zero = 1" : "a larger budget");
    return static_cast<int>(ExitCode::usage);
  }
  return 0;
}

}  // namespace nupipe::launcher
