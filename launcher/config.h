// config.h: the whole run configuration, parsed from TOML (toml++) into each component's own
// options struct and validated once. Every error names the offending key (exit code 2).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "optim/options.h"
#include "parallel/pipeline/options.h"
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
  parallel::RecomputeSpec recompute;  // activation recompute: "none", "full" or per stage
};

struct RunOptions {
  std::string dir = "runs/tiny";  // metrics.jsonl, the log and the effective config go here
  int log_every = 10;             // steps between log lines / metrics records (the last step is always logged)
  bool trace = false;             // write run.dir/trace.json (Chrome trace of every rank's spans)
};

struct RuntimeOptions {
  std::string device = "cpu";
  // "fp32", or "bf16": bf16 parameters (compute copy), activations and activation gradients,
  // fp32 master weights, optimizer state, parameter gradients, LayerNorm statistics and loss.
  std::string precision = "fp32";
  // Flush subnormal floats to zero in host compute (x86 FTZ/DAZ; the cpu backend). Off by
  // default: results then follow IEEE arithmetic exactly.
  bool flush_denormals = false;
  // Linear layers' bias (and the MLP's GELU) in the GEMM's epilogue where the backend has one
  // (cuda: cuBLASLt); off runs them as separate kernels (for A/B measurements).
  bool gemm_epilogues = true;
  // Collectives and pipeline transfers: "nccl" (device buffers, one GPU per rank), "mpi"
  // (host-staged; ranks sharing a GPU, or the cpu backend), or "auto": NCCL when every rank has
  // its own GPU and nupipe was built with it, MPI otherwise.
  std::string comm = "auto";
  // Attention: "fused" (Backend::attention_*: no [T,T] matrices kept, an fp32 log-sum-exp
  // per query row and head instead), "unfused" (batched GEMMs and a causal softmax, keeping
  // the probabilities; the reference), or "auto": fused on the cpu (as fast, half the
  // activations), unfused on cuda, where the batched GEMMs run on tensor cores and the fused
  // kernels on CUDA cores (fused saves memory there, not time).
  std::string attention = "auto";
  int threads = 0;  // 0: the host's cores divided by the ranks on the host
  // A rank that waits on its peers (a collective, a receive, a checkpoint write) this long
  // names the peer that stopped answering and exits with code 5.
  double peer_timeout_s = 60.0;
  // Memory a rank may use, in GiB: one number for every stage, or one per stage (devices of
  // different sizes); {0}: what the host has available divided by its ranks. A run predicted to
  // need more on any stage is refused at start-up (exit 2), and parallel.stage_layers = "auto"
  // plans within it.
  std::vector<double> memory_gib{0.0};
  // The throughput of each stage's devices in TFLOP/s, for the planner with stages of unequal
  // speed: one number (equal devices) or one per stage.
  std::vector<double> tflops{1.0};
  // A file `nupipe plan --calibrate --save-calibration` wrote: the planner ("auto" split and
  // schedule) times each stage by its measured passes instead of FLOPs at runtime.tflops.
  std::string calibration;
};

struct CheckpointOptions {
  int every = 100;                       // steps between saves, and one after the last; 0: none
  int keep = 2;                          // committed checkpoints kept (never fewer than the newest)
  int keep_every = 0;                    // steps that are multiples of it: milestones, never
                                         // deleted by retention; 0: none
  std::string dir;                       // "": run.dir/checkpoints
  std::string resume = "auto";           // "auto", "never", or a checkpoint directory
  bool strict = false;                   // a damaged newest checkpoint stops the run (exit 4)
  std::string on_signal = "save";        // SIGTERM/SIGINT: "save" then exit 0, or "exit" at once
  std::string on_write_error = "stop";   // a failed save: "stop" (exit 4) or "continue"
  bool async = false;                    // save in the background from a host snapshot
};

struct Config {
  runtime::ModelConfig model;
  runtime::DataOptions data;
  parallel::Options parallel;
  TrainOptions train;
  optim::AdamWOptions adamw;     // [optim] lr, beta1, beta2, eps, weight_decay
  optim::LrScheduleOptions lr;   // [optim] warmup_steps, min_lr_ratio (total_steps = train.steps)
  optim::ClipOptions clip;       // [optim] grad_clip
  CheckpointOptions checkpoint;
  RunOptions run;
  RuntimeOptions runtime;
  // Settings accepted with a warning (e.g. a warm-up longer than the run), for the log.
  std::vector<std::string> warnings;
  // The keys the file or a --set gave (the others hold their defaults), e.g. "runtime.tflops"
  // ([[runtime.devices]] gives runtime.memory_gib and runtime.tflops).
  std::set<std::string, std::less<>> given;
  bool is_given(std::string_view key) const { return given.find(key) != given.end(); }

  // global_batch = micro_batch x microbatches x data
  int microbatches() const { return train.global_batch / (train.micro_batch * parallel.data); }
  // checkpoint.dir, or run.dir/checkpoints when it is empty.
  std::string checkpoint_dir() const {
    return checkpoint.dir.empty() ? run.dir + "/checkpoints" : checkpoint.dir;
  }
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
// runtime.precision as the compute dtype: "fp32" -> f32, "bf16" -> bf16 (validated at load).
runtime::DType parse_precision(const std::string& precision);
// The model that runs: [model] with train.loss_chunk, runtime.precision and runtime.attention
// resolved into it (the trainer, the planner and `nupipe plan` all build from this one).
runtime::ModelConfig model_that_runs(const Config& config);
std::string to_toml(const Config& config);
// Every key with its value as to_toml writes it: {"model.n_layer", "4"}, in schema order.
std::vector<std::pair<std::string, std::string>> key_values(const Config& config);

}  // namespace nupipe::launcher
