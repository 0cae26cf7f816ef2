// trainer.cpp: the training loop of one rank in the pp x dp grid: where it starts (a
// checkpoint or step 0), the steps, validation, reporting, checkpoints and stop signals.
#include "launcher/trainer.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "checkpoint/reader.h"
#include "checkpoint/training_state.h"
#include "launcher/async_save.h"
#include "launcher/checkpointing.h"
#include "launcher/memory_report.h"
#include "launcher/metrics.h"
#include "launcher/outcome.h"
#include "launcher/report.h"
#include "launcher/run_dir.h"
#include "launcher/run_lock.h"
#include "launcher/signals.h"
#include "launcher/stage.h"
#include "launcher/trace_file.h"
#include "launcher/train_step.h"
#include "parallel/comm/consensus.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/session/watchdog.h"
#include "runtime/error.h"

namespace nupipe::launcher {

using runtime::MemTag;
using Clock = std::chrono::steady_clock;

namespace {

// The first step's checks of the layer cost model and of ZeRO's traffic formula.
void log_first_step(spdlog::logger& log, const Stage& s, const Config& cfg,
                    const parallel::Topology& topo, const StepStats& st) {
  const optim::ZeroOptimizer& optimizer = *s.optimizer;
  const parallel::StageMemory& plan = s.plan.at(topo.stage());
  log.info("activations (rank 0): measured peak {}, expected {} from the layer cost "
           "descriptors for {} microbatch(es) in flight{}",
           runtime::format_bytes(s.backend->memory().peak(MemTag::activations)),
           runtime::format_bytes(static_cast<double>(plan.activations)), plan.in_flight,
           plan.recompute_blocks > 0
               ? fmt::format(", {} block(s) recomputed", plan.recompute_blocks)
               : std::string());
  log.info("data-parallel traffic (rank 0): {} bytes sent per step on the data group ({}); "
           "ZeRO formula 2 Psi (dp-1)/dp = {:.1f} with Psi = {} bytes (the stage's {}gradient "
           "buffer)",
           st.data_bytes, optimizer.sharded() ? "reduce-scatter + all-gather" : "all-reduce",
           optimizer.formula_bytes_per_step(), optimizer.grad_buffer_bytes(),
           optimizer.sharded() ? "padded " : "");
}

// Where training starts: a checkpoint's state loaded into this rank's stage, or step 0.
checkpoint::TrainingState start_state(const ResumePoint& rp, Stage& s, const Config& cfg,
                                      parallel::ProcessGroups& groups) {
  checkpoint::TrainingState state;
  state.seed = cfg.train.seed;
  state.data_name = s.data.train->name();
  state.data_tokens = s.data.train->size();
  if (rp.dir.empty()) return state;
  parallel::agree(groups.world(), [&] {
    checkpoint::load_rank_part(rp.dir, s.model->params(), s.optimizer->adamw(),
                               rp.info.state.optimizer_steps);
  });
  state.step = rp.info.state.step;
  state.optimizer_steps = rp.info.state.optimizer_steps;
  state.tokens_seen = rp.info.state.tokens_seen;
  if (state.tokens_seen < 0) {  // a checkpoint from before it was counted: its own batch shape
    int64_t per_step = s.tokens_per_step;
    try {
      const Config saved = parse_config(rp.info.config_toml, "the checkpoint's config");
      per_step = static_cast<int64_t>(saved.train.global_batch) * saved.model.seq_len;
    } catch (const Error&) {
    }
    state.tokens_seen = state.step * per_step;
  }
  return state;
}

}  // namespace

TrainResult train(const Config& cfg, const parallel::World& world,
                  const std::shared_ptr<spdlog::logger>& log, const TrainHooks& hooks) {
  install_stop_handlers();
  // The background save's MPI calls come from a thread of their own (same verdict on every
  // rank: they share the config and the MPI library).
  if (cfg.checkpoint.async && cfg.checkpoint.every > 0 && !world.threads_multiple()) {
    throw usage_error(std::string("checkpoint.async = true needs MPI_THREAD_MULTIPLE (the "
                                  "background save makes MPI calls of its own); this MPI "
                                  "provides ") + world.thread_level_name(),
                      "use an MPI built with thread support (Open MPI is), or save "
                      "synchronously (--set checkpoint.async=false)");
  }
  const parallel::Watchdog::Options watchdog_options{
      cfg.runtime.peer_timeout_s, world.rank(), world.size(), world.host(),
      [log, outcome = hooks.outcome](const std::string& m) {
        log->error("{}", m);
        if (outcome) outcome->peer_failure(m, *log);
        log->flush();  // the process ends right after, without unwinding
      },
      {}, {}};
  parallel::Watchdog watchdog(watchdog_options);
  parallel::ProcessGroups groups(cfg.parallel.pipeline, cfg.parallel.data, &watchdog);
  const parallel::Topology& topo = groups.topology();
  parallel::Communicator& world_comm = groups.world();

  // Everything that can refuse the input happens, on every rank, before run.dir is touched.
  Stage s;
  // The device plane's communicators use the stage's backend: gone before it is.
  struct PlaneReset {
    parallel::ProcessGroups& groups;
    ~PlaneReset() { groups.reset_device_plane(); }
  } plane_reset{groups};
  open_stage_inputs(s, cfg, world, groups);
  // run.dir's lock, before anything in it is read or changed (a live run there: exit 2).
  auto lock = std::make_unique<RunLock>(cfg.run.dir, world, groups.world_mpi());
  const std::vector<std::string> lock_notes = lock->notes();
  if (hooks.outcome) hooks.outcome->hold(std::move(lock));  // held until the outcome is written
  const ResumePoint rp = find_resume_point(cfg, groups.world_mpi());
  // A finished run relaunched: nothing in run.dir is touched (its metrics, config and log
  // stay those of the run that trained); the last log line says which run and how on.
  if (std::string why = nothing_to_train(cfg, rp); !why.empty()) {
    if (world.is_root()) {
      for (const std::string& w : rp.warnings) log->warn("checkpoint: {}", w);
    }
    TrainResult done;
    done.first_step = done.steps = static_cast<int>(rp.info.state.step);
    done.nothing_to_train = std::move(why);
    return done;
  }
  parallel::agree(world_comm, [&] {
    if (world.is_root()) {
      require_writable_checkpoint_dir(cfg);
      prepare_run_dir(cfg, *log, rp.dir.empty() ? 0 : rp.info.state.step,
                      cfg.checkpoint.resume != "never");
    }
  });
  // Every rank's heartbeat carries rank 0's token for this launch (an earlier job's files in
  // the same run.dir are told apart by it).
  watchdog.set_heartbeat_dir(
      cfg.run.dir + "/heartbeat",
      groups.world_mpi().broadcast_text(parallel::Watchdog::job_token(world.host()), 0));
  if (world.is_root()) {  // the same on every rank: said once
    for (const std::string& n : lock_notes) log->warn("{}", n);
    for (const std::string& w : cfg.warnings) log->warn("config: {}", w);
    for (const std::string& w : s.budget_warnings) log->warn("memory: {}", w);
    for (const std::string& w : rp.warnings) log->warn("checkpoint: {}", w);
    for (const std::string& n : rp.notes) log->info("checkpoint: {}", n);
    if (!rp.dir.empty()) {
      if (const SettingChanges c = describe_changes(cfg, rp.info.config_toml); !c.line.empty()) {
        if (c.changes_training) log->warn("{}", c.line);
        else log->info("{}", c.line);
      }
      const checkpoint::TrainingState& saved = rp.info.state;
      if (saved.data_name != s.data.train->name() || saved.data_tokens != s.data.train->size()) {
        log->warn("the training data differs from the checkpoint's ({}, {} tokens -> {}, {} "
                  "tokens): the batches from step {} on are not the uninterrupted run's",
                  saved.data_name, saved.data_tokens, s.data.train->name(),
                  s.data.train->size(), saved.step);
      }
    }
  }

  build_stage(s, cfg, groups, /*initialize=*/rp.dir.empty());
  const auto t_load = Clock::now();
  checkpoint::TrainingState state = start_state(rp, s, cfg, groups);
  if (hooks.outcome) hooks.outcome->step_done(state.step);
  if (!rp.dir.empty()) {
    log->info("checkpoint loaded: step {} into stage {} of {} ({} parameters, optimizer range "
              "of {} elements) in {:.2f} s",
              state.step, topo.stage(), cfg.parallel.pipeline, s.model->params().numel(),
              s.optimizer->adamw().end() - s.optimizer->adamw().begin(),
              std::chrono::duration<double>(Clock::now() - t_load).count());
  }
  log_stage(s, cfg, world, *log);

  std::unique_ptr<MetricsLog> metrics;
  if (world.is_root()) metrics = std::make_unique<MetricsLog>(cfg.run.dir + "/metrics.jsonl");
  Checkpointer checkpointer(cfg, s, groups, *log, &watchdog_options);
  if (world.is_root()) {
    log->info("MPI thread level: {}{}", world.thread_level_name(),
              checkpointer.async()
                  ? fmt::format("; checkpoint.async: saves are written, checksummed and "
                                "committed by thread {} over a communicator of its own (a "
                                "duplicate of the world), its waits bounded by watchdog "
                                "thread wd-{}; snapshot host memory {} per rank (rank 0, "
                                "predicted)",
                                AsyncSave::kThreadName, AsyncSave::kThreadName,
                                runtime::format_bytes(static_cast<double>(
                                    checkpointer.snapshot_bytes_predicted())))
                  : std::string());
  }
  if (hooks.on_start) hooks.on_start(checkpointer, state);
  world_comm.barrier();
  align_trace_clocks(*s.trace, groups.world_mpi(), world.host());  // one time axis

  TrainResult result;
  result.loss_floor = s.data.loss_floor;
  result.first_step = static_cast<int>(state.step);
  const int steps = cfg.train.steps;
  const auto t_start = Clock::now();
  while (state.step < steps) {
    const int step = static_cast<int>(state.step);
    StepStats st = run_step(s, cfg, groups, step, [&] { checkpointer.before_update(); });
    state.step = step + 1;
    state.optimizer_steps = s.optimizer->adamw().steps_taken();
    state.tokens_seen += s.tokens_per_step;
    if (hooks.outcome) hooks.outcome->step_done(state.step);
    result.losses.push_back(st.loss);
    if (step == result.first_step) {
      log_first_step(*log, s, cfg, topo, st);
      // The peaks of one training step (validation, which holds other buffers, not yet run).
      write_memory_json(s, groups, cfg.run.dir + "/memory.json", &checkpointer);
    }

    const bool last = state.step == steps;
    if (s.val_sampler &&
        (last || (cfg.train.val_every > 0 && state.step % cfg.train.val_every == 0))) {
      st.val_loss = validate(s, cfg, groups);
    }
    // metrics.jsonl records the same steps whether or not the run was interrupted (the
    // first, every run.log_every-th counted as the log and checkpoints count, the validated
    // and the last); the log also shows the first step of every (re)start.
    const bool record = last || state.step == 1 || state.step % cfg.run.log_every == 0 ||
                        st.val_loss >= 0;
    if (record && metrics) {
      metrics->write(metrics_record(st, s.tokens_per_step, s.model_cost.flops_per_token,
                                    state.tokens_seen, std::chrono::system_clock::now()));
    }
    if (record || step == result.first_step) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      log->info("{}", step_line(st, steps, s.tokens_per_step, cfg.parallel.pipeline > 1,
                                step - result.first_step + 1, elapsed));
    }
    result.final_loss = st.loss;
    if (st.val_loss >= 0) result.final_val_loss = st.val_loss;
    result.steps = step + 1;

    checkpointer.poll();  // a background save that has ended: its verdict, on every rank
    if (st.stop) {
      result.stopped = true;
      const bool save = cfg.checkpoint.on_signal == "save";
      if (world.is_root()) log->warn("stop requested ({} on a rank): stopping after step {}{}",
                stop_signal() ? signal_name(stop_signal()) : "a signal", state.step,
                save ? ", saving a checkpoint" : " without saving (checkpoint.on_signal = \"exit\")");
      if (save && !checkpointer.due(state.step)) checkpointer.save(state, "on signal");
    }
    if (checkpointer.due(state.step)) checkpointer.save(state, last ? "last step" : "interval");
    if (st.stop) break;
  }
  // The last save (or the one a stop signal made) commits before the run may end.
  checkpointer.finish();
  if (checkpointer.saves() > 0) {
    const double train_s = std::chrono::duration<double>(Clock::now() - t_start).count();
    if (checkpointer.async()) {
      log->info("checkpoints: {} saved in the background; training stalled {:.2f} s for them "
                "in all = {:.2f}% of the run's {:.1f} s (waits for snapshots {:.2f} s, for a save "
                "in flight {:.2f} s)",
                checkpointer.saves(), checkpointer.seconds_spent(),
                100.0 * checkpointer.seconds_spent() / std::max(train_s, 1e-9), train_s,
                checkpointer.snapshot_seconds(), checkpointer.waited_seconds());
    } else {
      log->info("checkpoints: {} saved, {:.2f} s in all = {:.1f}% of the run's {:.1f} s",
                checkpointer.saves(), checkpointer.seconds_spent(),
                100.0 * checkpointer.seconds_spent() / std::max(train_s, 1e-9), train_s);
    }
  }
  if (cfg.run.trace) write_chrome_trace(*s.trace, topo, world_comm, cfg.run.dir + "/trace.json");
  if (hooks.on_finish) hooks.on_finish(*s.model, groups);
  return result;
}

}  // namespace nupipe::launcher
