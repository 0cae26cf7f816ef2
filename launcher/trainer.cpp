// trainer.cpp: the single-rank training loop and its reporting.
#include "launcher/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>

#include <spdlog/spdlog.h>

#include "launcher/dataset.h"
#include "launcher/metrics.h"
#include "launcher/run_dir.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
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

// Host-side batch buffers copied into backend tensors for one microbatch.
struct MicroBatch {
  MicroBatch(runtime::Backend& be, int64_t batch, int64_t seq)
      : tokens(Tensor::empty(be, {batch * seq}, DType::i32, MemTag::workspace)),
        targets(Tensor::empty(be, {batch * seq}, DType::i32, MemTag::workspace)),
        host_tokens(batch * seq),
        host_targets(batch * seq) {}
  void upload() {
    runtime::from_host(tokens, host_tokens);
    runtime::from_host(targets, host_targets);
  }
  Tensor tokens, targets;
  std::vector<int32_t> host_tokens, host_targets;
};

void log_memory_table(spdlog::logger& log, const runtime::LayerCost& total,
                      const runtime::Backend& be, int64_t tokens_per_micro) {
  const auto& mem = be.memory();
  log.info("memory per rank (expected from layer cost descriptors, allocator-accounted):");
  log.info("  {:<12} {:>12}", "params", runtime::format_bytes(mem.current(MemTag::params)));
  log.info("  {:<12} {:>12}", "grads", runtime::format_bytes(mem.current(MemTag::grads)));
  log.info("  {:<12} {:>12}", "optimizer", runtime::format_bytes(mem.current(MemTag::optimizer)));
  log.info("  {:<12} {:>12}  ({} B/token x {} tokens per microbatch)", "activations",
           runtime::format_bytes(static_cast<double>(total.activation_bytes_per_token) *
                                 tokens_per_micro),
           total.activation_bytes_per_token, tokens_per_micro);
  log.info("  {:<12} {:>12}  (largest transient layer buffer)", "workspace",
           runtime::format_bytes(static_cast<double>(total.workspace_bytes_per_token) *
                                 tokens_per_micro));
}

}  // namespace

TrainResult train(const Config& cfg, const parallel::World& world,
                  const std::shared_ptr<spdlog::logger>& log) {
  const runtime::ModelConfig& mc = cfg.model;
  const int steps = cfg.train.steps;
  const int micro = cfg.train.micro_batch, n_micro = cfg.microbatches();
  const int64_t T = mc.seq_len, tokens_per_micro = static_cast<int64_t>(micro) * T;
  const int64_t tokens_per_step = tokens_per_micro * n_micro;

  // Everything that can refuse the input happens before run.dir is touched.
  Dataset data = load_dataset(cfg);
  runtime::BatchSampler train_sampler(data.train->data(), data.train->size(), mc.seq_len,
                                      cfg.train.seed, data.train->name());
  std::unique_ptr<runtime::BatchSampler> val_sampler;
  if (data.val) {
    val_sampler = std::make_unique<runtime::BatchSampler>(data.val->data(), data.val->size(),
                                                          mc.seq_len, cfg.train.seed,
                                                          data.val->name());
  }
  auto backend = runtime::make_backend(cfg.runtime.device);
  prepare_run_dir(cfg, *log);

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
  runtime::GptModel model(*backend, mc, runtime::StageSlice::whole(mc));
  model.params().initialize(cfg.train.seed);
  optim::AdamW adamw(model.params(), cfg.adamw);
  optim::LrScheduleOptions lr_opt = cfg.lr;
  lr_opt.total_steps = steps;

  runtime::LayerCost cost;
  for (const auto& [name, layer] : runtime::gpt_costs(mc, model.slice())) cost += layer;
  const double flops_per_token = cost.flops_per_token;
  log->info("model: GPT-2, {} layers, d_model {}, {} heads, vocab {}, seq_len {}, {} "
            "embeddings; {:.3f}M parameters, {:.1f} MFLOP/token (forward+backward)",
            mc.n_layer, mc.d_model, mc.n_head, mc.vocab_size, mc.seq_len,
            mc.tie_embeddings ? "tied" : "untied", model.params().numel() / 1e6,
            flops_per_token / 1e6);
  log->info("batch: {} sequences/step = {} micro-batches of {}; {} tokens/step; {} threads on "
            "backend {}",
            cfg.train.global_batch, n_micro, micro, tokens_per_step, threads, backend->name());
  log_memory_table(*log, cost, *backend, tokens_per_micro);

  MetricsLog metrics(cfg.run.dir + "/metrics.jsonl");
  MicroBatch mb(*backend, micro, T);
  const float dloss = 1.0f / static_cast<float>(tokens_per_step);

  auto validate = [&]() {
    double sum = 0.0;
    for (int i = 0; i < cfg.train.val_batches; ++i) {
      val_sampler->fill_sequential(static_cast<int64_t>(i) * micro, micro, mb.host_tokens.data(),
                                   mb.host_targets.data());
      mb.upload();
      sum += model.loss_sum(mb.tokens, mb.targets, micro);
    }
    return sum / (static_cast<double>(cfg.train.val_batches) * tokens_per_micro);
  };

  TrainResult result;
  result.loss_floor = data.loss_floor;
  const auto t_start = Clock::now();
  for (int step = 0; step < steps; ++step) {
    const auto t0 = Clock::now();
    model.params().zero_grads();
    double loss_sum = 0.0;
    for (int m = 0; m < n_micro; ++m) {
      train_sampler.fill(step, static_cast<int64_t>(m) * micro, micro, mb.host_tokens.data(),
                         mb.host_targets.data());
      mb.upload();
      loss_sum += model.forward_backward(mb.tokens, mb.targets, micro, dloss);
    }
    const double loss = loss_sum / tokens_per_step;
    if (!std::isfinite(loss)) {
      throw Error(ExitCode::non_finite,
                  fmt::format("loss is {} at step {}", loss, step),
                  "lower optim.lr, raise optim.warmup_steps or set optim.grad_clip > 0");
    }
    const double grad_norm = std::sqrt(optim::grad_sum_squares(model.params()));
    optim::clip_to_norm(model.params(), grad_norm, cfg.clip);
    const float lr = optim::learning_rate(lr_opt, cfg.adamw.lr, step);
    adamw.step(lr);
    const double step_s = std::chrono::duration<double>(Clock::now() - t0).count();

    if (step == 0) {
      log->info("activations: measured peak {}, expected {} from the layer cost descriptors",
                runtime::format_bytes(backend->memory().peak(MemTag::activations)),
                runtime::format_bytes(static_cast<double>(cost.activation_bytes_per_token) *
                                      tokens_per_micro));
    }

    double val_loss = -1.0;
    const bool last = step + 1 == steps;
    if (val_sampler && (last || (cfg.train.val_every > 0 && (step + 1) % cfg.train.val_every == 0))) {
      val_loss = validate();
    }
    if (last || step % cfg.run.log_every == 0 || val_loss >= 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double eta = elapsed / (step + 1) * (steps - step - 1);
      const double tok_s = tokens_per_step / step_s;
      nlohmann::json rec = {{"step", step},          {"loss", loss},
                            {"lr", lr},              {"grad_norm", grad_norm},
                            {"tokens_per_s", tok_s}, {"step_ms", step_s * 1e3},
                            {"gflops", flops_per_token * tokens_per_step / step_s / 1e9}};
      if (val_loss >= 0) rec["val_loss"] = val_loss;
      metrics.write(rec);
      log->info("step {:>{}}/{} | loss {:.4f}{} | lr {:.2e} | gnorm {:.3f} | {} tok/s | "
                "{:.0f} ms/step | elapsed {} | ETA {}",
                step + 1, std::to_string(steps).size(), steps, loss,
                val_loss >= 0 ? fmt::format(" | val {:.4f}", val_loss) : std::string(), lr,
                grad_norm, format_rate(tok_s), step_s * 1e3, format_duration(elapsed),
                format_duration(eta));
    }
    result.final_loss = loss;
    if (val_loss >= 0) result.final_val_loss = val_loss;
    result.steps = step + 1;
  }
  return result;
}

}  // namespace nupipe::launcher
