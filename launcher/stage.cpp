// stage.cpp: opening a rank's inputs, building its slice of the model, and the start-up report.
#include "launcher/stage.h"

#include "launcher/calibrate.h"
#include "launcher/report.h"
#include "parallel/comm/consensus.h"
#include "parallel/plan/cost_model.h"
#include "parallel/plan/planner.h"
#include "runtime/error.h"

#include <algorithm>
#include <fstream>

namespace nupipe::launcher {

namespace {

// MemAvailable of /proc/meminfo, or 0 when it cannot be read.
int64_t host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// The memory a rank of each stage may use: runtime.memory_gib (one for all stages or one per
// stage), else the host's available memory shared by its ranks, the smallest over the world so
// that every rank plans with the same numbers.
std::vector<int64_t> stage_budgets(const Config& cfg, const parallel::World& world,
                                   parallel::ProcessGroups& groups, std::string* source) {
  const int p = cfg.parallel.pipeline;
  const std::vector<double>& gib = cfg.runtime.memory_gib;
  std::vector<int64_t> out(p);
  if (!(gib.size() == 1 && gib[0] == 0)) {
    *source = "runtime.memory_gib";
    for (int s = 0; s < p; ++s) {
      const double g = gib.size() == 1 ? gib[0] : gib[s];
      out[s] = g > 0 ? static_cast<int64_t>(g * static_cast<double>(1ull << 30)) : INT64_MAX;
    }
    return out;
  }
  *source = "the host's available memory / its ranks";
  const int64_t mine = host_available_bytes() / std::max(1, world.local_size());
  int64_t least = mine > 0 ? mine : INT64_MAX;
  for (const std::string& v : groups.world_mpi().gather_text(std::to_string(least))) {
    least = std::min<int64_t>(least, std::stoll(v));
  }
  least = std::stoll(groups.world_mpi().broadcast_text(std::to_string(least)));
  std::fill(out.begin(), out.end(), least);
  return out;
}

const char* largest_kind(const parallel::StageMemory& m, int64_t* bytes) {
  const std::pair<const char*, int64_t> kinds[] = {{"params", m.params},
                                                   {"grads", m.grads},
                                                   {"optimizer", m.optimizer},
                                                   {"activations", m.activations},
                                                   {"workspace", m.workspace},
                                                   {"loss_workspace", m.loss_workspace},
                                                   {"weight_inputs", m.weight_inputs}};
  const auto* best = &kinds[0];
  for (const auto& k : kinds) {
    if (k.second > best->second) best = &k;
  }
  *bytes = best->second;
  return best->first;
}

std::string budgets_text(const std::vector<int64_t>& b) {
  if (std::all_of(b.begin(), b.end(), [&](int64_t x) { return x == b[0]; })) {
    return b[0] == INT64_MAX ? "no limit" : runtime::format_bytes(b[0]);
  }
  std::string t = "[";
  for (size_t i = 0; i < b.size(); ++i) {
    t += (i ? ", " : "") + (b[i] == INT64_MAX ? std::string("no limit") : runtime::format_bytes(b[i]));
  }
  return t + "]";
}

// Why the planner's choice beat the runner-up: the objective is the simulated step, then the
// peak memory.
std::string why_second(const parallel::Plan& best, const parallel::Plan& second) {
  if (!parallel::beats(best, second)) return "as good (a tie: the first found is kept)";
  const double slower = second.sim.step_s / best.sim.step_s - 1.0;
  if (slower > 1e-12) return fmt::format("slower by {:.1f}%", 100.0 * slower);
  return "as fast, " + runtime::format_bytes(second.peak_bytes - best.peak_bytes) +
         " more memory";
}

// A planner's time for the log. Seconds only from a throughput the config gives;
// runtime.tflops' default makes equal devices equal and no more, so times are then in units of
// one block's forward + backward of one microbatch (as `nupipe plan` gives them).
std::string plan_time(const Stage& s, const Config& cfg, const parallel::PlanInputs& in,
                      double t) {
  if (cfg.is_given("runtime.tflops") || s.passes.given()) {
    return fmt::format("{:.3f} ms", t * 1e3);
  }
  const double unit_s = runtime::block_cost(in.model).flops_per_token * s.tokens_per_micro /
                        in.devices[0].flops_per_s;
  return fmt::format("{:.2f} units", t / unit_s);
}

// parallel.stage_layers = "auto": the planner's split (and recompute) within the budget, the
// same on every rank (same inputs).
// The planner's inputs for this run: its model, degrees, schedule, batch shape and budgets.
parallel::PlanInputs plan_inputs(const Stage& s, const Config& cfg) {
  parallel::PlanInputs in;
  in.model = s.model_config;
  in.pipeline = cfg.parallel.pipeline;
  in.cost = {cfg.parallel.data, cfg.parallel.zero, s.schedule, s.n_micro, s.micro, {}};
  for (int st = 0; st < in.pipeline; ++st) {
    const std::vector<double>& tf = cfg.runtime.tflops;
    in.devices.push_back({s.budgets[st], (tf.size() == 1 ? tf[0] : tf[st]) * 1e12,
                          s.step_elements_per_s, s.passes});
  }
  using K = parallel::RecomputeSpec::Kind;
  in.recompute = cfg.train.recompute.kind == K::full        ? parallel::RecomputeChoice::full
                 : cfg.train.recompute.kind == K::automatic ? parallel::RecomputeChoice::automatic
                                                            : parallel::RecomputeChoice::none;
  return in;
}

// What the planner would run instead of a split that does not fit: its best plan with
// recompute chosen, as the config keys that select it, or what even the lowest peak needs.
std::string planner_suggestion(const Stage& s, const Config& cfg) {
  parallel::PlanInputs in = plan_inputs(s, cfg);
  in.recompute = parallel::RecomputeChoice::automatic;
  if (const std::optional<parallel::Plan> best = parallel::plan_best(in)) {
    return fmt::format("the planner fits it: parallel.stage_layers = {} with train.recompute = {} "
                       "(peak {} per rank; or parallel.stage_layers = \"auto\" and "
                       "train.recompute = \"auto\")",
                       parallel::format_list(best->layers), parallel::format_list(best->recompute),
                       runtime::format_bytes(best->peak_bytes));
  }
  const parallel::Plan low = parallel::plan_lowest_peak(in);
  return "no split fits even with recompute: the lowest peak, " +
         parallel::format_list(low.layers) + " with recompute " +
         parallel::format_list(low.recompute) + ", needs " + runtime::format_bytes(low.peak_bytes);
}

// What bf16 saves on the fullest stage against the same run in fp32, per tag, from the cost
// model (the same numbers memory.json checks against the allocator).
std::string bf16_saving(const Stage& s, const Config& cfg) {
  runtime::ModelConfig fp32 = s.model_config;
  fp32.dtype = runtime::DType::f32;
  const parallel::CostInputs in{cfg.parallel.data, cfg.parallel.zero, s.schedule, s.n_micro,
                                s.micro, s.recompute};
  const std::vector<parallel::StageMemory> f = parallel::plan_stage_memory(fp32, s.layout, in);
  size_t st = 0;
  for (size_t i = 1; i < s.plan.size(); ++i) {
    if (s.plan[i].total() > s.plan[st].total()) st = i;
  }
  const parallel::StageMemory& b = s.plan[st];
  auto delta = [](int64_t now, int64_t before) {
    const int64_t d = now - before;
    return fmt::format("{}{} ({:+.0f}%)", d < 0 ? "-" : "+", runtime::format_bytes(std::abs(d)),
                       before > 0 ? 100.0 * d / before : 0.0);
  };
  return fmt::format(
      "bf16 against fp32 on stage {} (the fullest): params {}, activations {}, workspace {}, "
      "optimizer {} (the fp32 master weights), grads unchanged; total {} -> {}",
      st, delta(b.params, f[st].params), delta(b.activations, f[st].activations),
      delta(b.workspace, f[st].workspace), delta(b.optimizer, f[st].optimizer),
      runtime::format_bytes(f[st].total()), runtime::format_bytes(b.total()));
}

void plan_layout(Stage& s, const Config& cfg, const std::string& budget_source) {
  const parallel::PlanInputs in = plan_inputs(s, cfg);
  const std::optional<parallel::Plan> best = parallel::plan_best(in);
  const std::vector<int> uniform_counts = parallel::uniform_split(in.pipeline, in.model.n_layer);
  const parallel::Plan uniform = parallel::evaluate(
      in, uniform_counts,
      in.recompute == parallel::RecomputeChoice::full ? uniform_counts : std::vector<int>{});
  if (!best) {
    const parallel::Plan low = parallel::plan_lowest_peak(in);
    throw usage_error(
        "parallel.stage_layers = \"auto\": no split of " + std::to_string(in.model.n_layer) +
            " blocks over " + std::to_string(in.pipeline) + " stages fits " +
            budgets_text(s.budgets) + " per rank (" + budget_source +
            "); the lowest peak, " + parallel::format_list(low.layers) + " with recompute " +
            parallel::format_list(low.recompute) + ", needs " + runtime::format_bytes(low.peak_bytes),
        std::string(in.recompute == parallel::RecomputeChoice::none
                        ? "set train.recompute = \"auto\", "
                        : "") +
            "lower train.micro_batch, add pipeline stages, set parallel.zero = 1 with "
            "parallel.data > 1, or raise runtime.memory_gib (nupipe plan shows each)");
  }
  s.layout = parallel::layout_from_counts(best->layers, in.model.n_layer);
  s.recompute = best->recompute;
  const std::optional<parallel::Plan> second = parallel::runner_up(in, *best);
  const bool seconds = cfg.is_given("runtime.tflops") || s.passes.given();
  auto time = [&](double t) { return plan_time(s, cfg, in, t); };
  s.plan_note = fmt::format(
      "planner: stage_layers {} with recompute {} (simulated step {}{} peak {}) "
      "within {} per rank ({}); {}; the uniform split {} would need {} ({}), step {}",
      parallel::format_list(best->layers), parallel::format_list(best->recompute),
      time(best->sim.step_s),
      seconds ? (s.passes.given() ? " from runtime.calibration," : " at runtime.tflops,")
              : ", 1 unit = one block's forward + backward of a microbatch, runtime.tflops not "
                "being given;",
      runtime::format_bytes(best->peak_bytes), budgets_text(s.budgets), budget_source,
      second ? fmt::format("runner-up: {} with recompute {} (step {}, peak {}): {}",
                           parallel::format_list(second->layers),
                           parallel::format_list(second->recompute), time(second->sim.step_s),
                           runtime::format_bytes(second->peak_bytes), why_second(*best, *second))
             : std::string("no other split fits"),
      parallel::format_list(uniform_counts), runtime::format_bytes(uniform.peak_bytes),
      uniform.fits ? "fits" : "does not fit", time(uniform.sim.step_s));
}

// parallel.schedule = "auto": the schedule whose plan has the shortest simulated step within
// the budgets, with the planner's split under each (stage_layers = "auto") or the config's; the
// same on every rank (same inputs). None fitting: 1F1B, whose refusal names the shortfall.
void choose_schedule(Stage& s, const Config& cfg) {
  s.schedule = parallel::ScheduleKind::one_f_one_b;
  const parallel::PlanInputs in = plan_inputs(s, cfg);
  std::vector<int> layers, recompute;
  if (cfg.parallel.stage_layers.kind != parallel::StageLayersSpec::Kind::automatic) {
    const parallel::StageLayout layout = parallel::make_stage_layout(
        cfg.parallel.stage_layers, cfg.parallel.pipeline, s.model_config.n_layer);
    layers = parallel::layer_counts(layout);
    recompute = parallel::recompute_blocks(cfg.train.recompute, layout);
    if (recompute.empty()) recompute.assign(layers.size(), 0);
  }
  const std::vector<std::optional<parallel::Plan>> each =
      parallel::plan_each_schedule(in, layers, recompute);
  std::string steps;
  for (size_t i = 0; i < each.size(); ++i) {
    steps += fmt::format("{}{} {}", steps.empty() ? "" : ", ", parallel::schedules()[i].name,
                         each[i] ? plan_time(s, cfg, in, each[i]->sim.step_s)
                                 : std::string("does not fit"));
  }
  const std::optional<parallel::Plan> best = parallel::fastest_plan(each);
  if (best) s.schedule = best->schedule;
  s.schedule_note = fmt::format(
      "parallel.schedule = \"auto\": {} ({}; the simulated step of each: {})",
      parallel::schedule_name(s.schedule),
      best ? "the shortest simulated step within the budget" : "nothing fits: 1F1B, refused below",
      steps);
}

}  // namespace

void open_stage_inputs(Stage& s, const Config& cfg, const parallel::World& world,
                       parallel::ProcessGroups& groups) {
  s.model_config = model_that_runs(cfg);
  s.micro = cfg.train.micro_batch;
  s.n_micro = cfg.microbatches();
  s.tokens_per_micro = static_cast<int64_t>(s.micro) * s.model_config.seq_len;
  s.tokens_per_step = s.tokens_per_micro * s.n_micro * cfg.parallel.data;
  std::string budget_source;
  s.budgets = stage_budgets(cfg, world, groups, &budget_source);
  s.threads = cfg.runtime.threads > 0 ? cfg.runtime.threads : world.default_threads();
  if (!cfg.runtime.calibration.empty()) {
    const Calibration c = load_calibration(cfg.runtime.calibration,
                                           {s.model_config, s.micro, s.threads},
                                           "runtime.calibration");
    s.passes = c.passes;
    s.step_elements_per_s = c.step_elements_per_s;
  }
  if (cfg.parallel.schedule == "auto") {
    choose_schedule(s, cfg);
  } else {
    s.schedule = parallel::parse_schedule_kind(cfg.parallel.schedule);
  }
  if (cfg.parallel.stage_layers.kind == parallel::StageLayersSpec::Kind::automatic) {
    plan_layout(s, cfg, budget_source);
  } else {
    s.layout = parallel::make_stage_layout(cfg.parallel.stage_layers, cfg.parallel.pipeline,
                                           s.model_config.n_layer);
    s.recompute = parallel::recompute_blocks(cfg.train.recompute, s.layout);
  }
  s.slice = s.layout.stages.at(groups.topology().stage());
  s.plan = parallel::plan_stage_memory(
      s.model_config, s.layout,
      {cfg.parallel.data, cfg.parallel.zero, s.schedule, s.n_micro, s.micro, s.recompute});
  // Never the kernel's OOM killer: a stage predicted not to fit is refused before anything
  // is allocated (every rank computes the same plan and budget, so all refuse together).
  for (size_t st = 0; st < s.plan.size(); ++st) {
    const int64_t budget = s.budgets[st];
    if (s.plan[st].total() <= budget) {
      // The prediction leaves out what no allocator tag covers (the data, MPI's buffers, the
      // program): a stage this close to the budget may still not fit.
      if (s.plan[st].total() > budget / 10 * 9) {
        s.budget_warnings.push_back(fmt::format(
            "stage {} is predicted to use {} of the {} available per rank ({}): over 90%; "
            "memory outside the allocator's tags (data, MPI buffers) may not fit",
            st, runtime::format_bytes(s.plan[st].total()), runtime::format_bytes(budget),
            budget_source));
      }
      continue;
    }
    int64_t bytes = 0;
    const char* kind = largest_kind(s.plan[st], &bytes);
    throw usage_error(
        "stage " + std::to_string(st) + " is predicted to need " +
            runtime::format_bytes(s.plan[st].total()) + " per rank, more than the " +
            runtime::format_bytes(budget) + " available (" + budget_source + "); most of it " +
            kind + ": " + runtime::format_bytes(bytes) + "; " + planner_suggestion(s, cfg),
        "let the planner split the model (parallel.stage_layers = \"auto\", and train.recompute "
        "= \"auto\"), lower train.micro_batch, or add ranks; `nupipe plan CONFIG --memory-gib "
        "X` shows what fits");
  }
  const int seq = s.model_config.seq_len;
  parallel::agree(groups.world(), [&] {
    s.data = load_dataset(cfg);
    s.train_sampler = std::make_unique<runtime::BatchSampler>(
        s.data.train->data(), s.data.train->size(), seq, cfg.train.seed, s.data.train->name());
    if (s.data.val) {
      s.val_sampler = std::make_unique<runtime::BatchSampler>(
          s.data.val->data(), s.data.val->size(), seq, cfg.train.seed, s.data.val->name());
    }
    s.backend = runtime::make_backend(cfg.runtime.device, world.local_rank());
  });
  // The same verdict on every rank: the choice is collective.
  s.comm = parallel::choose_comm(cfg.runtime.comm, *s.backend, groups.world_mpi());
  parallel::build_device_plane(groups, s.comm.kind, *s.backend, cfg.runtime.peer_timeout_s);
  // And at run time: what the prediction missed is refused by the allocator, not the kernel.
  const parallel::Topology& topo = groups.topology();
  if (s.budgets[topo.stage()] != INT64_MAX) {
    s.backend->set_memory_limit(s.budgets[topo.stage()],
                                fmt::format("stage {} (rank {})", topo.stage(), topo.rank));
  }
}

void build_stage(Stage& s, const Config& cfg, parallel::ProcessGroups& groups,
                 bool initialize) {
  const runtime::ModelConfig& mc = s.model_config;
  s.backend->set_threads(s.threads);
  s.backend->set_gemm_epilogues(cfg.runtime.gemm_epilogues);
  if (cfg.runtime.flush_denormals && !s.backend->set_flush_denormals(true)) {
    throw usage_error("runtime.flush_denormals = true is not supported by this CPU",
                      "set runtime.flush_denormals = false");
  }
  // ZeRO-1 cuts the flat buffers into data-degree equal shards: pad them for it.
  s.model = std::make_unique<runtime::StageModel>(
      *s.backend, mc, s.slice, cfg.parallel.zero ? cfg.parallel.data : 1,
      s.recompute.at(groups.topology().stage()));
  if (initialize) s.model->params().initialize(cfg.train.seed);
  s.optimizer = std::make_unique<optim::ZeroOptimizer>(
      s.model->params(), groups, mc.tie_embeddings, cfg.parallel.zero, cfg.adamw);
  optim::AdamW& adamw = s.optimizer->adamw();
  if (initialize && adamw.owns_master()) {  // bf16: the master weights start from exact values
    runtime::from_host(adamw.master(), s.model->params().initial_values(
                                           cfg.train.seed, adamw.begin(), adamw.end()));
  }
  s.trace = std::make_unique<parallel::Trace>(cfg.run.trace);
  s.executor = std::make_unique<parallel::PipelineExecutor>(
      *s.model, groups.pipeline(), s.schedule, s.n_micro, s.micro, *s.trace);
  s.model_cost = s.stage_cost = runtime::LayerCost{};
  for (const auto& [name, layer] : runtime::stage_costs(mc, runtime::StageSlice::whole(mc))) {
    s.model_cost += layer;
  }
  for (const auto& [name, layer] : runtime::stage_costs(mc, s.slice)) s.stage_cost += layer;
  s.model_params = 0;
  for (const runtime::TensorSpec& t : runtime::stage_specs(mc, runtime::StageSlice::whole(mc))) {
    s.model_params += t.numel();
  }
}

void log_stage(const Stage& s, const Config& cfg, const parallel::World& world,
               spdlog::logger& log) {
  const runtime::ModelConfig& mc = s.model_config;
  log.info("data: train {} ({} tokens){}", s.data.train->name(), s.data.train->size(),
           s.data.val ? fmt::format(", validation {} ({} tokens)", s.data.val->name(),
                                    s.data.val->size())
                      : std::string(", no validation set"));
  if (s.data.loss_floor >= 0) {
    log.info("synthetic corpus: order-{} Markov chain over {} symbols, {} successors per "
             "context; entropy rate {:.4f} nats/token; lowest reachable loss at seq_len {}: "
             "{:.4f}",
             cfg.data.synthetic.order, cfg.data.synthetic.alphabet,
             cfg.data.synthetic.branching, s.data.entropy_rate, mc.seq_len, s.data.loss_floor);
  }
  log.info("model: {}, {} layers, d_model {}, {} heads, vocab {}, seq_len {}, {} "
           "embeddings; {:.3f}M parameters, {:.1f} MFLOP/token (forward+backward); precision {}",
           mc.llama() ? fmt::format("llama ({} key/value heads, SwiGLU width {})", mc.kv_heads(),
                                    mc.ffn_width())
                      : std::string("GPT-2"),
           mc.n_layer, mc.d_model, mc.n_head, mc.vocab_size, mc.seq_len,
           mc.tie_embeddings ? "tied" : "untied", s.model_params / 1e6,
           s.model_cost.flops_per_token / 1e6,
           mc.dtype == runtime::DType::bf16
               ? "bf16 (bf16 parameters and activations; fp32 master weights, optimizer "
                 "state, gradients and loss)"
               : "fp32");
  log.info("parallel: {} ranks = pipeline {} x data {}, schedule {}; {} sequences/step = {} "
           "micro-batches of {} x {} replicas; {} tokens/step; {} threads per rank on backend "
           "{}",
           world.size(), cfg.parallel.pipeline, cfg.parallel.data,
           parallel::schedule_name(s.schedule),
           cfg.train.global_batch, s.n_micro, s.micro, cfg.parallel.data, s.tokens_per_step,
           s.threads, s.backend->name());
  log.info("collectives: {} ({}; runtime.comm = \"{}\")", parallel::comm_kind_name(s.comm.kind),
           s.comm.reason, cfg.runtime.comm);
  log_lines(log, parallel::layout_table(s.layout, mc, cfg.parallel.data));
  if (!s.schedule_note.empty()) log.info("{}", s.schedule_note);
  if (!s.plan_note.empty()) log.info("{}", s.plan_note);
  log.info("expected memory per rank of each stage (layer cost descriptors, schedule, ZeRO-{}, "
           "recompute {}):",
           cfg.parallel.zero, parallel::format_recompute(cfg.train.recompute));
  log_lines(log, parallel::stage_memory_table(s.plan), "  ");
  if (mc.dtype == runtime::DType::bf16) log.info("{}", bf16_saving(s, cfg));
  log_memory_table(log, s.stage_cost, s.plan.at(0), *s.backend, s.tokens_per_micro,
                   *s.optimizer);
}

}  // namespace nupipe::launcher
