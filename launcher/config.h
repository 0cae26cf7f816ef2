// config.h: the whole run configuration, parsed from TOML (toml++) into each component's own
// options struct and validated once. Every error names the offending key (exit code 2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "optim/options.h"
#include "parallel/options.h"
#include "runtime/data/data_options.h"
#include "runtime/model_config.h"

namespace nupipe::launcher {

struct TrainOptions {
  int steps = 300;
  uint64_t seed = 42;        // initialisation and batch sampling
  int global_batch = 16;     // sequences per optimizer step, all replicas together
  int micro_batch = 8;       // sequences per forward/backward
  int val_every = 100;       // steps between validation passes (0: only at the end)
  int val_batches = 4;       // micro-batches per validation pass
  int loss_chunk = 0;        // tokens per LM-head/cross-entropy chunk; 0: all at once
};

struct RunOptions {
  std::string dir = "runs/tiny";  // metrics.jsonl, the log and the effective config go here
  int log_every = 10;             // steps between log lines / metrics records (the last step is always logged)
  bool trace = false;             // write run.dir/trace.json (Chrome trace of every rank's spans)
};

struct RuntimeOptions {
  std::string device = "cpu";
  int threads = 0;  // 0: the host's cores divided by the ranks on the host
};

struct Config {
  runtime::ModelConfig model;
  runtime::DataOptions data;
  parallel::Options parallel;
  TrainOptions train;
  optim::AdamWOptions adamw;     // [optim] lr, beta1, beta2, eps, weight_decay
  optim::LrScheduleOptions lr;   // [optim] warmup_steps, min_lr_ratio (total_steps = train.steps)
  optim::ClipOptions clip;       // [optim] grad_clip
  RunOptions run;
  RuntimeOptions runtime;

  // global_batch = micro_batch x microbatches x data
  int microbatches() const { return train.global_batch / (train.micro_batch * parallel.data); }
};

// Reads a TOML file, applies `--set section.key=value` overrides (value parsed as a TOML
// value, or taken as a string when it is not one), validates. Throws nupipe::Error with
// ExitCode::usage naming the key on any problem: unknown section or key, wrong type,
// out-of-range value, inconsistent batch arithmetic.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from text; `source` names it in messages.
Config parse_config(std::string_view toml_text, std::string_view source,
                    const std::vector<std::string>& overrides = {});
// The effective configuration as TOML (written to run.dir/config.toml), round-trips.
std::string to_toml(const Config& config);

}  // namespace nupipe::launcher
