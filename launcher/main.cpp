// main.cpp: the `nupipe` executable: CLI verbs (train, plan, data prepare, sample, ckpt), MPI
// session, logging and the mapping of errors to exit codes (docs/sre-runbook.md).
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "launcher/checkpointing.h"
#include "launcher/ckpt_tool.h"
#include "launcher/config.h"
#include "launcher/outcome.h"
#include "launcher/plan_tool.h"
#include "launcher/prepare_tool.h"
#include "launcher/sample_tool.h"
#include "launcher/trainer.h"
#include "parallel/comm/tensor_transport.h"
#include "parallel/session/world.h"
#include "runtime/check.h"
#include "runtime/cpu/onednn_gemm.h"
#include "runtime/error.h"
#if defined(NUPIPE_HAVE_CUDA)
#include "runtime/cuda/cuda_backend.h"
#endif

namespace {

using namespace nupipe;

std::shared_ptr<spdlog::logger> make_logger(const parallel::World& world) {
  auto sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  auto log = std::make_shared<spdlog::logger>("nupipe", sink);
  log->set_pattern("[%H:%M:%S] %v");
  // One voice: rank 0 reports; the others only warn and fail.
  log->set_level(world.is_root() ? spdlog::level::info : spdlog::level::warn);
  spdlog::drop("nupipe");
  spdlog::register_logger(log);  // the runtime's one-time notes (the cpu GEMM kernels)
  return log;
}

// The --set flags that fit the config to a world of `ranks` ranks, for the world-size hint:
// the data degree kept where it divides the world, else 1, and parallel.stage_layers made
// uniform where the config's split no longer fits. Each candidate is loaded and validated as a
// launch would be, so the hint is a fix that works; "" when none does.
std::string world_size_fix(const std::string& config_path,
                           const std::vector<std::string>& overrides,
                           const launcher::Config& cfg, int ranks) {
  std::vector<int> datas;
  if (ranks % cfg.parallel.data == 0) datas.push_back(cfg.parallel.data);
  if (cfg.parallel.data != 1) datas.push_back(1);
  for (const int data : datas) {
    std::vector<std::string> fix = {"parallel.pipeline=" + std::to_string(ranks / data),
                                    "parallel.data=" + std::to_string(data)};
    for (const bool uniform : {false, true}) {
      if (uniform) fix.push_back("parallel.stage_layers=uniform");
      std::vector<std::string> all = overrides;
      all.insert(all.end(), fix.begin(), fix.end());
      try {
        (void)launcher::load_config(config_path, all);
      } catch (const std::exception&) {
        continue;
      }
      std::string flags;
      for (const auto& f : fix) flags += (flags.empty() ? "--set " : " --set ") + f;
      return flags;
    }
  }
  return "";
}

int run_train(const parallel::World& world, const std::string& config_path,
              const std::vector<std::string>& overrides) {
  launcher::Config cfg = launcher::load_config(config_path, overrides);
  const int grid = cfg.parallel.pipeline * cfg.parallel.data;
  if (world.size() != grid) {  // every rank sees the same numbers: no collective needed
    const std::string fix = world_size_fix(config_path, overrides, cfg, world.size());
    throw usage_error(
        "the world has " + std::to_string(world.size()) + " rank" +
            (world.size() > 1 ? "s" : "") + " but parallel.pipeline x parallel.data = " +
            std::to_string(cfg.parallel.pipeline) + " x " + std::to_string(cfg.parallel.data) +
            " = " + std::to_string(grid),
        "launch with mpirun -np " + std::to_string(grid) +
            (fix.empty() ? ", or change parallel.pipeline / parallel.data so their product is " +
                               std::to_string(world.size())
                         : ", or run on " + std::to_string(world.size()) + " rank" +
                               (world.size() > 1 ? "s" : "") + " with " + fix));
  }
  auto log = make_logger(world);
  log->info("nupipe train {} ({} rank{})", printable(config_path), world.size(),
            world.size() > 1 ? "s" : "");
  // From the moment the run holds run.dir, run.dir/outcome.json records how it ended.
  launcher::OutcomeRecorder outcome(world, cfg.train.steps, cfg.checkpoint_dir());
  launcher::TrainHooks hooks;
  hooks.outcome = &outcome;
  const launcher::TrainResult r = launcher::recording_failures(
      outcome, *log, [&] { return launcher::train(cfg, world, log, hooks); });
  if (r.stopped) {
    log->info("stopped: after step {} of {} on a stop signal; relaunch the same command to "
              "continue", r.steps, cfg.train.steps);
  } else if (!r.nothing_to_train.empty()) {
    log->info("done: {}", r.nothing_to_train);
  } else {
    // The validation loss when the last step was validated (it always is with a validation
    // set), else the last step's training loss; against the synthetic corpus's floor.
    const bool validated = r.final_val_loss >= 0;
    const double final_loss = validated ? r.final_val_loss : r.final_loss;
    log->info("done: {} steps; final {} loss {:.4f}{}", r.steps,
              validated ? "validation" : "training", final_loss,
              r.loss_floor >= 0 ? fmt::format(", floor {:.4f} ({:+.1f}% above)", r.loss_floor,
                                              100.0 * (final_loss / r.loss_floor - 1.0))
                                : std::string());
  }
  if (r.nothing_to_train.empty()) outcome.finished(r.stopped, *log);  // the last line
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nupipe: train GPT-style models with non-uniform pipeline parallelism"};
  app.require_subcommand(1);
  const std::string cpu = "cpu (onednn " + runtime::cpu::OnednnGemm::version() + ", openblas)";
#if defined(NUPIPE_HAVE_CUDA)
  const std::string backends = cpu + ", " + runtime::CudaBackend::build_info();
#else
  const std::string backends = cpu;
#endif
  const std::string collectives = parallel::nccl_built() ? "mpi, nccl" : "mpi";
  app.set_version_flag("--version", std::string("nupipe ") + launcher::nupipe_version() +
                                        " (backends: " + backends + "; collectives: " +
                                        collectives + "; checkpoints: parallel HDF5)");

  std::string config_path;
  std::vector<std::string> overrides;
  CLI::App* train = app.add_subcommand("train", "train a model described by a TOML config");
  train->add_option("config", config_path, "config file (e.g. configs/tiny.toml)")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--set", overrides, "override a config key: section.key=value (repeatable)")
      ->type_name("KEY=VALUE");

  CLI::App* data = app.add_subcommand("data", "token data tools");
  data->require_subcommand(1);
  launcher::PrepareCommand prep;
  CLI::App* prepare = data->add_subcommand(
      "prepare", "tokenize a text file into llm.c-format token files (byte level, vocab 256, or "
                 "GPT-2's BPE, vocab 50257), read as a stream; FILE.bin.json records the "
                 "tokenizer");
  prepare->add_option("--text", prep.text_path, "input text file")
      ->required()
      ->check(CLI::ExistingFile);
  prepare->add_option("--out", prep.out_path, "output token file (.bin)")->required();
  prepare->add_option("--tokenizer", prep.tokenizer,
                      "byte (each byte one token; the default) or gpt2 (GPT-2's BPE by "
                      "js-tiktoken, which scripts/setup.sh installs)")
      ->check(CLI::IsMember({"byte", "gpt2"}));
  prepare->add_option("--val-fraction", prep.val_fraction,
                      "the last share of the tokens that goes to --val-out, e.g. 0.01")
      ->check(CLI::Range(0.0, 1.0, "in [0, 1)"));
  prepare->add_option("--val-out", prep.val_path, "validation token file (.bin)");

  launcher::SampleCommand sample_cmd;
  CLI::App* sample = app.add_subcommand(
      "sample", "generate text from a checkpoint on one process: the prompt in the run's "
                "tokenizer, decoded back to text");
  sample->add_option("checkpoint", sample_cmd.checkpoint,
                     "checkpoint directory (run.dir/checkpoints/step_N), or a run directory "
                     "(its newest checkpoint)")
      ->required();
  sample->add_option("--config", sample_cmd.config_path,
                     "config to build the model from (default: the one the checkpoint recorded)")
      ->check(CLI::ExistingFile);
  sample->add_option("--set", sample_cmd.overrides, "override a config key (repeatable)")
      ->type_name("KEY=VALUE");
  sample->add_option("--prompt", sample_cmd.prompt,
                     "text to continue (gpt2: empty starts a document at <|endoftext|>)");
  sample->add_option("--tokens", sample_cmd.tokens, "new tokens to generate (default 64)")
      ->check(CLI::NonNegativeNumber);
  sample->add_option("--temperature", sample_cmd.temperature,
                     "0: greedy (the most likely token); 1: the model's distribution (default)");
  sample->add_option("--top-k", sample_cmd.top_k,
                     "sample among the k most likely tokens; 0: all (default)")
      ->check(CLI::NonNegativeNumber);
  sample->add_option("--seed", sample_cmd.seed, "the same seed gives the same text (default 0)");
  sample->add_option("--tokenizer", sample_cmd.tokenizer,
                     "byte or gpt2 (default: the one recorded next to data.train, FILE.bin.json)")
      ->check(CLI::IsMember({"byte", "gpt2"}));
  sample->add_flag("--ids", sample_cmd.ids, "print the token ids instead of the text");

  launcher::PlanCommand plan_cmd;
  CLI::App* plan = app.add_subcommand(
      "plan", "plan the stage split (and recompute) within a memory budget per stage, next to "
              "the uniform split; no mpirun needed");
  plan->add_option("config", plan_cmd.config_path, "config file")->required()->check(CLI::ExistingFile);
  plan->add_option("--set", plan_cmd.overrides, "override a config key (repeatable)")
      ->type_name("KEY=VALUE");
  plan->add_option("--memory-gib", plan_cmd.memory_gib,
                   "memory budget per rank in GiB: one for all stages, or one per stage "
                   "(80,80,40,40); default: the config's runtime.memory_gib or [[runtime.devices]]");
  plan->add_option("--tflops", plan_cmd.tflops,
                   "throughput per stage in TFLOP/s: one for all, or one per stage; default: the "
                   "config's runtime.tflops or [[runtime.devices]]; with none (nor --calibrate) "
                   "times are relative to the slowest stage");
  plan->add_option("--world-size", plan_cmd.world_size,
                   "ranks to plan for (stages = world size / parallel.data)");
  plan->add_option("--compare", plan_cmd.compare, "also evaluate this split, e.g. 2,2,3,3,4,4,4,2");
  plan->add_option("--recompute", plan_cmd.recompute,
                   "auto (the planner chooses), none or full; default: the config's "
                   "train.recompute")
      ->check(CLI::IsMember({"auto", "none", "full"}));
  plan->add_option("--p2p-gbps", plan_cmd.p2p_gbps,
                   "bandwidth between pipeline stages in GB/s for the simulator (default: free)")
      ->check(CLI::NonNegativeNumber);
  plan->add_option("--net-gbps", plan_cmd.net_gbps,
                   "data-parallel reduction bandwidth per rank in GB/s (default: free)")
      ->check(CLI::NonNegativeNumber);
  plan->add_option("--peak-tflops", plan_cmd.peak_tflops,
                   "the device's dense peak in TFLOP/s for MFU (default: --tflops)")
      ->check(CLI::NonNegativeNumber);
  plan->add_option("--gpu-hour-usd", plan_cmd.gpu_hour_usd,
                   "price of one device-hour, for the cost per million tokens")
      ->check(CLI::NonNegativeNumber);
  plan->add_flag("--calibrate", plan_cmd.calibrate,
                 "time the config's layers on this machine (cpu backend) instead of --tflops");
  plan->add_option("--save-calibration", plan_cmd.save_calibration,
                   "with --calibrate: also write the measured pass times to this file (JSON)");
  plan->add_option("--calibration", plan_cmd.calibration,
                   "the pass times --save-calibration wrote, instead of timing them again")
      ->check(CLI::ExistingFile);
  plan->add_flag("--json", plan_cmd.json, "the plans as JSON");

  CLI::App* ckpt = app.add_subcommand("ckpt", "checkpoint tools");
  ckpt->require_subcommand(1);
  std::string ckpt_dir;
  bool inspect_json = false;
  CLI::App* inspect = ckpt->add_subcommand(
      "inspect", "verify a checkpoint, then print its step, the layout that wrote it, every "
                 "tensor with its shape and its config");
  inspect->add_option("dir", ckpt_dir, "checkpoint directory (run.dir/checkpoints/step_N)")
      ->required();
  inspect->add_flag("--json", inspect_json, "the same as one JSON object");
  CLI::App* verify = ckpt->add_subcommand(
      "verify", "check every byte of a checkpoint against its manifest (exit 0, or 4 naming "
                "each damaged file and dataset)");
  verify->add_option("dir", ckpt_dir, "checkpoint directory")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // CLI11's message, with bytes that are not UTF-8 (a file's name) shown as \xNN.
    std::fprintf(stderr, "%s\nRun with --help for more information.\n",
                 printable(e.what()).c_str());
    return static_cast<int>(ExitCode::usage);
  }

  // Tools that run on one process answer without MPI.
  try {
    if (*plan) return launcher::run_plan(plan_cmd);
    if (*prepare) return launcher::run_prepare(prep);
    if (*sample) return launcher::run_sample(sample_cmd);
    if (*inspect) return launcher::ckpt_inspect(ckpt_dir, inspect_json);
    if (*verify) return launcher::ckpt_verify(ckpt_dir);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "HINT: %s\n", e.hint().c_str());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\nHINT: this is a bug in nupipe; please report it "
                 "with the command line\n", e.what());
    return static_cast<int>(ExitCode::internal);
  }

  // checkpoint.async's background save makes MPI calls of its own: MPI_THREAD_MULTIPLE is
  // asked for only then (a config that does not load is reported by run_train, on rank 0).
  bool threads_multiple = false;
  if (*train) {
    try {
      threads_multiple = launcher::load_config(config_path, overrides).checkpoint.async;
    } catch (const std::exception&) {
    }
  }
  std::unique_ptr<parallel::World> world;
  try {
    world = std::make_unique<parallel::World>(&argc, &argv, threads_multiple);
  } catch (const Error& e) {  // MPI could not start
    std::fprintf(stderr, "error: %s\n", e.what());
    return static_cast<int>(e.code());
  }
  try {
    if (*train) return run_train(*world, config_path, overrides);
  } catch (const Error& e) {
    // Rank 0 speaks for all; other ranks only report failures of their own making
    // (a peer or internal failure); consensus.cpp prints a rank's own input errors.
    if (world->is_root() || e.code() == ExitCode::peer || e.code() == ExitCode::internal) {
      std::fprintf(stderr, "error: %s\n", e.what());
      if (!e.hint().empty()) std::fprintf(stderr, "HINT: %s\n", e.hint().c_str());
    }
    // A failure only this rank knows of: the others may be waiting for it in a collective.
    if (world->size() > 1 && (e.code() == ExitCode::peer || e.code() == ExitCode::internal)) {
      std::fflush(stderr);
      world->abort(static_cast<int>(e.code()));
    }
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error on %s: %s\nHINT: this is a bug in nupipe; please "
                 "report it with the command line and config\n", where_am_i().c_str(), e.what());
    std::fflush(stderr);
    if (world->size() > 1) world->abort(static_cast<int>(ExitCode::internal));
    return static_cast<int>(ExitCode::internal);
  }
  return 0;
}
