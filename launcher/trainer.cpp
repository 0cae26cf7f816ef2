// trainer.cpp: the training loop of one rank in the pp x dp grid, and its reporting.
#include "launcher/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>

#include <spdlog/spdlog.h>

#include "launcher/consensus.h"
#include "launcher/dataset.h"
#include "launcher/memory_plan.h"
#include "launcher/metrics.h"
#include "launcher/run_dir.h"
#include "launcher/trace_file.h"
#include "optim/lr_schedule.h"
#include "optim/zero.h"
#include "parallel/pipeline_executor.h"
#include "parallel/stage_layout.h"
#include "parallel/topology.h"
#include "runtime/backend.h"
#include "runtime/error.h"
#include "runtime/gpt_model.h"

namespace nupipe::launcher {

using runtime::DType;
using runtime::MemTag;
using runtime::Tensor;
using Clock = std::chrono::steady_clock;

namespace {

std::string format_duration(double seconds) {
  const int s = static_cast<int>(std::lround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%dh%02dm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%dm%02ds", s / 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%ds", s);
  return buf;
}

std::string format_rate(double per_s) {
  char buf[32];
  if (per_s >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", per_s / 1e6);
  else if (per_s >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fk", per_s / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", per_s);
  return buf;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = std::min(text.find('\n', start), text.size());
    if (end > start) lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

void log_memory_table(spdlog::logger& log, const runtime::LayerCost& total,
                      const runtime::Backend& be, int64_t tokens_per_micro,
                      const optim::ZeroOptimizer& optimizer) {
  const auto& mem = be.memory();
  const optim::Shard& shard = optimizer.shard();
  log.info("memory of rank 0 (stage 0; expected from layer cost descriptors, allocator-accounted):");
  log.info("  {:<12} {:>12}", "params", runtime::format_bytes(mem.current(MemTag::params)));
  log.info("  {:<12} {:>12}{}", "grads", runtime::format_bytes(mem.current(MemTag::grads)),
           optimizer.sharded() && shard.numel() < optimizer.grad_buffer_bytes() / 4
               ? fmt::format("  (flat buffer + ZeRO-1's reduce-scattered shard, {} elements)",
                             shard.numel())
               : std::string());
  log.info("  {:<12} {:>12}  {}", "optimizer", runtime::format_bytes(mem.current(MemTag::optimizer)),
           optimizer.sharded()
               ? fmt::format("(ZeRO-1: AdamW state for flat elements [{}, {}) of {} padded)",
                             shard.begin, shard.end, optimizer.grad_buffer_bytes() / 4)
               : std::string("(AdamW state replicated on every data-parallel rank)"));
  log.info("  {:<12} {:>12}  ({} B/token x {} tokens per microbatch)", "activations",
           runtime::format_bytes(static_cast<double>(total.activation_bytes_per_token) *
                                 tokens_per_micro),
           total.activation_bytes_per_token, tokens_per_micro);
  log.info("  {:<12} {:>12}  (largest transient layer buffer)", "workspace",
           runtime::format_bytes(static_cast<double>(total.workspace_bytes(tokens_per_micro))));
}

}  // namespace

TrainResult train(const Config& cfg, const parallel::World& world,
                  const std::shared_ptr<spdlog::logger>& log, const TrainHooks& hooks) {
  runtime::ModelConfig mc = cfg.model;
  mc.loss_chunk = cfg.train.loss_chunk;  // the head computes its loss this many tokens at a time
  const int steps = cfg.train.steps;
  const int micro = cfg.train.micro_batch, n_micro = cfg.microbatches();
  const int pp = cfg.parallel.pipeline, dp = cfg.parallel.data;
  const int64_t tokens_per_micro = static_cast<int64_t>(micro) * mc.seq_len;
  const int64_t tokens_per_step = tokens_per_micro * n_micro * dp;

  parallel::ProcessGroups groups(pp, dp);
  const parallel::Topology& topo = groups.topology();
  parallel::Communicator& world_comm = groups.world();
  const parallel::StageLayout layout =
      parallel::make_stage_layout(cfg.parallel.stage_layers, pp, mc.n_layer);
  const runtime::StageSlice slice = layout.stages.at(topo.stage());

  // Everything that can refuse the input happens, on every rank, before run.dir is touched.
  Dataset data;
  std::unique_ptr<runtime::BatchSampler> train_sampler, val_sampler;
  std::unique_ptr<runtime::Backend> backend;
  agree(world_comm, [&] {
    data = load_dataset(cfg);
    train_sampler = std::make_unique<runtime::BatchSampler>(
        data.train->data(), data.train->size(), mc.seq_len, cfg.train.seed, data.train->name());
    if (data.val) {
      val_sampler = std::make_unique<runtime::BatchSampler>(
          data.val->data(), data.val->size(), mc.seq_len, cfg.train.seed, data.val->name());
    }
    backend = runtime::make_backend(cfg.runtime.device);
  });
  agree(world_comm, [&] {
    if (world.is_root()) prepare_run_dir(cfg, *log);
  });

  log->info("data: train {} ({} tokens){}", data.train->name(), data.train->size(),
            data.val ? fmt::format(", validation {} ({} tokens)", data.val->name(),
                                   data.val->size())
                     : std::string(", no validation set"));
  if (data.loss_floor >= 0) {
    log->info("synthetic corpus: order-{} Markov chain over {} symbols, {} successors per "
              "context; entropy rate {:.4f} nats/token; lowest reachable loss at seq_len {}: "
              "{:.4f}",
              cfg.data.synthetic.order, cfg.data.synthetic.alphabet,
              cfg.data.synthetic.branching, data.entropy_rate, mc.seq_len, data.loss_floor);
  }
  const int threads = cfg.runtime.threads > 0 ? cfg.runtime.threads : world.default_threads();
  backend->set_threads(threads);
  // ZeRO-1 cuts the flat buffers into data-degree equal shards: pad them for it.
  runtime::GptModel model(*backend, mc, slice, cfg.parallel.zero ? dp : 1);
  model.params().initialize(cfg.train.seed);
  // Replicated AdamW, or ZeRO-1 (state for this rank's shard only): built before the memory
  // table so that its optimizer row is what this rank holds.
  optim::ZeroOptimizer optimizer(model.params(), groups, mc.tie_embeddings, cfg.parallel.zero,
                                 cfg.adamw);
  optim::LrScheduleOptions lr_opt = cfg.lr;
  lr_opt.total_steps = steps;

  // FLOPs of the whole model (every stage's layers), for the achieved-throughput figure.
  runtime::LayerCost model_cost, stage_cost;
  for (const auto& [name, layer] : runtime::gpt_costs(mc, runtime::StageSlice::whole(mc))) {
    model_cost += layer;
  }
  for (const auto& [name, layer] : runtime::gpt_costs(mc, slice)) stage_cost += layer;
  int64_t model_params = 0;
  for (const runtime::TensorSpec& s : runtime::gpt_specs(mc, runtime::StageSlice::whole(mc))) {
    model_params += s.numel();
  }
  log->info("model: GPT-2, {} layers, d_model {}, {} heads, vocab {}, seq_len {}, {} "
            "embeddings; {:.3f}M parameters, {:.1f} MFLOP/token (forward+backward)",
            mc.n_layer, mc.d_model, mc.n_head, mc.vocab_size, mc.seq_len,
            mc.tie_embeddings ? "tied" : "untied", model_params / 1e6,
            model_cost.flops_per_token / 1e6);
  log->info("parallel: {} ranks = pipeline {} x data {}, schedule {}; {} sequences/step = {} "
            "micro-batches of {} x {} replicas; {} tokens/step; {} threads per rank on backend "
            "{}",
            world.size(), pp, dp, cfg.parallel.schedule, cfg.train.global_batch, n_micro, micro,
            dp, tokens_per_step, threads, backend->name());
  for (const std::string& line : split_lines(parallel::layout_table(layout, mc, dp))) {
    log->info("{}", line);
  }
  const std::vector<StageMemory> planned = plan_stage_memory(cfg, mc, layout);
  log->info("expected memory per rank of each stage (layer cost descriptors, schedule, ZeRO-{}):",
            cfg.parallel.zero);
  for (const std::string& line : split_lines(stage_memory_table(planned))) {
    log->info("  {}", line);
  }
  log_memory_table(*log, stage_cost, *backend, tokens_per_micro, optimizer);

  std::unique_ptr<MetricsLog> metrics;
  if (world.is_root()) metrics = std::make_unique<MetricsLog>(cfg.run.dir + "/metrics.jsonl");
  world_comm.barrier();  // a common time origin for every rank's trace
  parallel::Trace trace(cfg.run.trace);
  parallel::PipelineExecutor executor(model, groups.pipeline(),
                                      parallel::parse_schedule_kind(cfg.parallel.schedule),
                                      n_micro, micro, trace);
  const float dloss = 1.0f / static_cast<float>(tokens_per_step);
  const int replica = topo.replica();

  auto train_batch = [&](int step) {
    return [&, step](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
      const int64_t first = (static_cast<int64_t>(replica) * n_micro + mb) * micro;
      train_sampler->fill(step, first, micro, tok.data(), tgt.data());
    };
  };
  auto validate = [&]() {
    const int n_val = cfg.train.val_batches;
    double sum = executor.eval(
        [&](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
          val_sampler->fill_sequential((static_cast<int64_t>(replica) * n_val + mb) * micro,
                                       micro, tok.data(), tgt.data());
        },
        n_val);
    world_comm.all_reduce_sum(&sum, 1);
    return sum / (static_cast<double>(n_val) * tokens_per_micro * dp);
  };

  TrainResult result;
  result.loss_floor = data.loss_floor;
  const auto t_start = Clock::now();
  for (int step = 0; step < steps; ++step) {
    trace.begin_step(step);
    const auto t0 = Clock::now();
    model.params().zero_grads();
    const double pipe_start = trace.now_us();
    double loss = executor.train_step(train_batch(step), dloss);
    const double pipe_end = trace.now_us();
    double sq = 0.0;
    const int64_t data_bytes_before = groups.data().bytes_sent();
    {
      parallel::Trace::Scope span(trace, optimizer.sharded() ? "reduce-scatter" : "all-reduce",
                                  "comm");
      world_comm.all_reduce_sum(&loss, 1);
      loss /= static_cast<double>(tokens_per_step);
      // Over the replicas (all-reduce, or ZeRO-1's reduce-scatter), the tied table between
      // first and last stage; the squared norm of every parameter of the model once.
      sq = optimizer.reduce_gradients();
    }
    if (!std::isfinite(loss)) {
      throw Error(ExitCode::non_finite, fmt::format("loss is {} at step {}", loss, step),
                  "lower optim.lr, raise optim.warmup_steps or set optim.grad_clip > 0");
    }
    const double grad_norm = std::sqrt(sq);
    const float lr = optim::learning_rate(lr_opt, cfg.adamw.lr, step);
    {
      parallel::Trace::Scope span(trace, "optimizer", "compute");
      optimizer.update(lr, grad_norm, cfg.clip);
    }
    if (optimizer.sharded()) {
      parallel::Trace::Scope span(trace, "all-gather", "comm");
      optimizer.gather_params();
    }
    const int64_t data_bytes = groups.data().bytes_sent() - data_bytes_before;
    double bubble = trace.idle_fraction(pipe_start, pipe_end);
    world_comm.all_reduce_sum(&bubble, 1);
    bubble /= world.size();
    const double step_s = std::chrono::duration<double>(Clock::now() - t0).count();
    result.losses.push_back(loss);

    if (step == 0) {
      log->info("activations (rank 0): measured peak {}, expected {} from the layer cost "
                "descriptors for {} microbatch(es) in flight",
                runtime::format_bytes(backend->memory().peak(MemTag::activations)),
                runtime::format_bytes(static_cast<double>(stage_cost.activation_bytes_per_token) *
                                      tokens_per_micro *
                                      parallel::max_in_flight(parallel::make_schedule(
                                          parallel::parse_schedule_kind(cfg.parallel.schedule),
                                          pp, topo.stage(), n_micro))),
                std::min(pp, n_micro));
      log->info("data-parallel traffic (rank 0): {} bytes sent per step on the data group "
                "({}); ZeRO formula 2 Psi (dp-1)/dp = {:.1f} with Psi = {} bytes (the stage's "
                "{}gradient buffer)",
                data_bytes, optimizer.sharded() ? "reduce-scatter + all-gather" : "all-reduce",
                optimizer.formula_bytes_per_step(), optimizer.grad_buffer_bytes(),
                optimizer.sharded() ? "padded " : "");
    }

    double val_loss = -1.0;
    const bool last = step + 1 == steps;
    if (val_sampler &&
        (last || (cfg.train.val_every > 0 && (step + 1) % cfg.train.val_every == 0))) {
      val_loss = validate();
    }
    if (last || step % cfg.run.log_every == 0 || val_loss >= 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double eta = elapsed / (step + 1) * (steps - step - 1);
      const double tok_s = tokens_per_step / step_s;
      nlohmann::json rec = {{"step", step},
                            {"loss", loss},
                            {"lr", lr},
                            {"grad_norm", grad_norm},
                            {"tokens_per_s", tok_s},
                            {"step_ms", step_s * 1e3},
                            {"bubble_fraction", bubble},
                            {"gflops", model_cost.flops_per_token * tokens_per_step / step_s / 1e9}};
      if (val_loss >= 0) rec["val_loss"] = val_loss;
      if (metrics) metrics->write(rec);
      log->info("step {:>{}}/{} | loss {:.4f}{} | lr {:.2e} | gnorm {:.3f} | {} tok/s | "
                "{:.0f} ms/step{} | elapsed {} | ETA {}",
                step + 1, std::to_string(steps).size(), steps, loss,
                val_loss >= 0 ? fmt::format(" | val {:.4f}", val_loss) : std::string(), lr,
                grad_norm, format_rate(tok_s), step_s * 1e3,
                pp > 1 ? fmt::format(" | bubble {:.0f}%", 100.0 * bubble) : std::string(),
                format_duration(elapsed), format_duration(eta));
    }
    result.final_loss = loss;
    if (val_loss >= 0) result.final_val_loss = val_loss;
    result.steps = step + 1;
  }
  if (cfg.run.trace) write_chrome_trace(trace, topo, world_comm, cfg.run.dir + "/trace.json");
  if (hooks.on_finish) hooks.on_finish(model, groups);
  return result;
}

}  // namespace nupipe::launcher
