// stage.cpp: opening a rank's inputs, building its slice of the model, and the start-up report.
#include "launcher/stage.h"

#include "launcher/report.h"
#include "parallel/consensus.h"
#include "parallel/cost_model.h"

namespace nupipe::launcher {

void open_stage_inputs(Stage& s, const Config& cfg, parallel::ProcessGroups& groups) {
  s.model_config = cfg.model;
  s.model_config.loss_chunk = cfg.train.loss_chunk;  // the head's loss this many tokens at a time
  s.micro = cfg.train.micro_batch;
  s.n_micro = cfg.microbatches();
  s.tokens_per_micro = static_cast<int64_t>(s.micro) * s.model_config.seq_len;
  s.tokens_per_step = s.tokens_per_micro * s.n_micro * cfg.parallel.data;
  s.schedule = parallel::parse_schedule_kind(cfg.parallel.schedule);
  s.layout = parallel::make_stage_layout(cfg.parallel.stage_layers, cfg.parallel.pipeline,
                                         s.model_config.n_layer);
  s.slice = s.layout.stages.at(groups.topology().stage());
  const int seq = s.model_config.seq_len;
  parallel::agree(groups.world(), [&] {
    s.data = load_dataset(cfg);
    s.train_sampler = std::make_unique<runtime::BatchSampler>(
        s.data.train->data(), s.data.train->size(), seq, cfg.train.seed, s.data.train->name());
    if (s.data.val) {
      s.val_sampler = std::make_unique<runtime::BatchSampler>(
          s.data.val->data(), s.data.val->size(), seq, cfg.train.seed, s.data.val->name());
    }
    s.backend = runtime::make_backend(cfg.runtime.device);
  });
}

void build_stage(Stage& s, const Config& cfg, const parallel::World& world,
                 parallel::ProcessGroups& groups, bool initialize) {
  const runtime::ModelConfig& mc = s.model_config;
  s.threads = cfg.runtime.threads > 0 ? cfg.runtime.threads : world.default_threads();
  s.backend->set_threads(s.threads);
  // ZeRO-1 cuts the flat buffers into data-degree equal shards: pad them for it.
  s.recompute = parallel::recompute_blocks(cfg.train.recompute, s.layout);
  s.model = std::make_unique<runtime::GptModel>(
      *s.backend, mc, s.slice, cfg.parallel.zero ? cfg.parallel.data : 1,
      s.recompute.at(groups.topology().stage()));
  if (initialize) s.model->params().initialize(cfg.train.seed);
  s.optimizer = std::make_unique<optim::ZeroOptimizer>(
      s.model->params(), groups, mc.tie_embeddings, cfg.parallel.zero, cfg.adamw);
  s.trace = std::make_unique<parallel::Trace>(cfg.run.trace);
  s.executor = std::make_unique<parallel::PipelineExecutor>(
      *s.model, groups.pipeline(), s.schedule, s.n_micro, s.micro, *s.trace);
  s.model_cost = s.stage_cost = runtime::LayerCost{};
  for (const auto& [name, layer] : runtime::gpt_costs(mc, runtime::StageSlice::whole(mc))) {
    s.model_cost += layer;
  }
  for (const auto& [name, layer] : runtime::gpt_costs(mc, s.slice)) s.stage_cost += layer;
  s.model_params = 0;
  for (const runtime::TensorSpec& t : runtime::gpt_specs(mc, runtime::StageSlice::whole(mc))) {
    s.model_params += t.numel();
  }
  s.plan = parallel::plan_stage_memory(
      mc, s.layout,
      {cfg.parallel.data, cfg.parallel.zero, s.schedule, s.n_micro, s.micro, s.recompute});
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
  log.info("model: GPT-2, {} layers, d_model {}, {} heads, vocab {}, seq_len {}, {} "
           "embeddings; {:.3f}M parameters, {:.1f} MFLOP/token (forward+backward)",
           mc.n_layer, mc.d_model, mc.n_head, mc.vocab_size, mc.seq_len,
           mc.tie_embeddings ? "tied" : "untied", s.model_params / 1e6,
           s.model_cost.flops_per_token / 1e6);
  log.info("parallel: {} ranks = pipeline {} x data {}, schedule {}; {} sequences/step = {} "
           "micro-batches of {} x {} replicas; {} tokens/step; {} threads per rank on backend "
           "{}",
           world.size(), cfg.parallel.pipeline, cfg.parallel.data, cfg.parallel.schedule,
           cfg.train.global_batch, s.n_micro, s.micro, cfg.parallel.data, s.tokens_per_step,
           s.threads, s.backend->name());
  log_lines(log, parallel::layout_table(s.layout, mc, cfg.parallel.data));
  log.info("expected memory per rank of each stage (layer cost descriptors, schedule, ZeRO-{}, "
           "recompute {}):",
           cfg.parallel.zero, parallel::format_recompute(cfg.train.recompute));
  log_lines(log, parallel::stage_memory_table(s.plan), "  ");
  log_memory_table(log, s.stage_cost, *s.backend, s.tokens_per_micro, *s.optimizer);
}

}  // namespace nupipe::launcher
