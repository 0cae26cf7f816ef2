// train_step.cpp: the step and the validation pass.
#include "launcher/train_step.h"

#include <chrono>
#include <cmath>

#include "launcher/signals.h"
#include "optim/lr_schedule.h"
#include "runtime/error.h"

namespace nupipe::launcher {

using Clock = std::chrono::steady_clock;

StepStats run_step(Stage& s, const Config& cfg, parallel::ProcessGroups& groups, int step,
                   const std::function<void()>& before_update) {
  parallel::Communicator& world = groups.world();
  parallel::Trace& trace = *s.trace;
  optim::ZeroOptimizer& optimizer = *s.optimizer;
  const int replica = groups.topology().replica();
  StepStats st;
  st.step = step;
  trace.begin_step(step);
  const auto t0 = Clock::now();
  s.model->params().zero_grads();
  const double pipe_start = trace.now_us();
  const float dloss = 1.0f / static_cast<float>(s.tokens_per_step);
  auto load = [&](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
    const int64_t first = (static_cast<int64_t>(replica) * s.n_micro + mb) * s.micro;
    s.train_sampler->fill(step, first, s.micro, tok.data(), tgt.data());
  };
  // {loss sum, stop requests}: one all-reduce carries both.
  const double loss_sum = s.executor->train_step(load, dloss);
  double sums[2] = {loss_sum, stop_signal() != 0 ? 1.0 : 0.0};
  double sq = 0.0;
  const int64_t data_bytes_before = groups.data().bytes_sent();
  // The bubble's window ends when the world's all-reduce returns: the same moment on every
  // rank (the last stage to finish its pipeline work releases them all), so the drain that
  // a stage spends waiting for the others counts as idle, as in the schedule's simulation.
  double pipe_end = 0.0;
  {
    parallel::Trace::Scope span(trace, optimizer.sharded() ? "reduce-scatter" : "all-reduce",
                                "comm");
    world.all_reduce_sum(sums, 2);
    pipe_end = trace.now_us();
    // Over the replicas (all-reduce, or ZeRO-1's reduce-scatter), the tied table between
    // first and last stage; the squared norm of every parameter of the model once.
    sq = optimizer.reduce_gradients();
  }
  st.loss = sums[0] / static_cast<double>(s.tokens_per_step);
  st.stop = sums[1] > 0.0;
  if (!std::isfinite(st.loss)) {
    throw Error(ExitCode::non_finite, fmt::format("loss is {} at step {} (counted as the log counts)", st.loss, step + 1),
                "lower optim.lr, raise optim.warmup_steps or set optim.grad_clip > 0");
  }
  st.grad_norm = std::sqrt(sq);
  optim::LrScheduleOptions lr_opt = cfg.lr;
  lr_opt.total_steps = cfg.train.steps;
  st.lr = optim::learning_rate(lr_opt, cfg.adamw.lr, step);
  if (before_update) before_update();
  {
    parallel::Trace::Scope span(trace, "optimizer", "compute");
    optimizer.update(st.lr, st.grad_norm, cfg.clip);
  }
  if (optimizer.sharded()) {
    parallel::Trace::Scope span(trace, "all-gather", "comm");
    optimizer.gather_params();
  }
  st.data_bytes = groups.data().bytes_sent() - data_bytes_before;
  double bubble = trace.idle_fraction(pipe_start, pipe_end);
  world.all_reduce_sum(&bubble, 1);
  st.bubble = bubble / world.size();
  st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return st;
}

double validate(Stage& s, const Config& cfg, parallel::ProcessGroups& groups) {
  // The same val_batches micro-batches whatever the layout (so a run resumed on another
  // layout reports comparable validation losses): replica r takes micro-batches r, r + data,
  // r + 2 data... of them. Replicas are independent pipelines, so their counts may differ.
  const int n_val = cfg.train.val_batches, dp = cfg.parallel.data;
  const int replica = groups.topology().replica();
  const int mine = n_val / dp + (replica < n_val % dp ? 1 : 0);
  double sum = 0.0;
  if (mine > 0) {
    sum = s.executor->eval(
        [&](int mb, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
          const int64_t global = replica + static_cast<int64_t>(mb) * dp;
          s.val_sampler->fill_sequential(global * s.micro, s.micro, tok.data(), tgt.data());
        },
        mine);
  }
  groups.world().all_reduce_sum(&sum, 1);
  return sum / (static_cast<double>(n_val) * s.tokens_per_micro);
}

}  // namespace nupipe::launcher
