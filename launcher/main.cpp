// main.cpp: the `nupipe` executable: CLI verbs (train, data prepare), MPI session, logging
// and the mapping of errors to exit codes (docs/sre-runbook.md).
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

#include "launcher/config.h"
#include "launcher/trainer.h"
#include "parallel/world.h"
#include "runtime/data/prepare.h"
#include "runtime/error.h"

namespace {

using namespace nupipe;

std::shared_ptr<spdlog::logger> make_logger(const parallel::World& world) {
  auto sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  auto log = std::make_shared<spdlog::logger>("nupipe", sink);
  log->set_pattern("[%H:%M:%S] %v");
  // One voice: rank 0 reports; the others only warn and fail.
  log->set_level(world.is_root() ? spdlog::level::info : spdlog::level::warn);
  return log;
}

int run_train(const parallel::World& world, const std::string& config_path,
              const std::vector<std::string>& overrides) {
  launcher::Config cfg = launcher::load_config(config_path, overrides);
  if (world.size() != 1) {
    throw usage_error(
        "this version trains on one rank, but the world has " + std::to_string(world.size()) +
            " ranks (parallel.pipeline x parallel.data = " +
            std::to_string(cfg.parallel.pipeline * cfg.parallel.data) + ")",
        "run without mpirun or with mpirun -np 1");
  }
  auto log = make_logger(world);
  log->info("nupipe train {} ({} rank{})", config_path, world.size(), world.size() > 1 ? "s" : "");
  const launcher::TrainResult r = launcher::train(cfg, world, log);
  if (r.loss_floor >= 0) {
    const double final_loss = r.final_val_loss >= 0 ? r.final_val_loss : r.final_loss;
    log->info("done: {} steps; final {} loss {:.4f}, floor {:.4f} ({:+.1f}% above)", r.steps,
              r.final_val_loss >= 0 ? "validation" : "training", final_loss, r.loss_floor,
              100.0 * (final_loss / r.loss_floor - 1.0));
  } else {
    log->info("done: {} steps; final training loss {:.4f}", r.steps, r.final_loss);
  }
  return 0;
}

int run_prepare(const std::string& text, const std::string& out) {
  const runtime::PrepareStats s = runtime::prepare_bytes(text, out);
  std::printf("wrote %s: %lld tokens (byte-level, vocab 256) from %lld bytes of %s\n",
              out.c_str(), static_cast<long long>(s.tokens), static_cast<long long>(s.bytes_in),
              text.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nupipe: train GPT-style models with non-uniform pipeline parallelism"};
  app.require_subcommand(1);

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
  std::string text_path, out_path;
  CLI::App* prepare = data->add_subcommand(
      "prepare", "turn any text file into a byte-level (vocab 256) token file in llm.c format");
  prepare->add_option("--text", text_path, "input text file")->required()->check(CLI::ExistingFile);
  prepare->add_option("--out", out_path, "output token file (.bin)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help or the error
    return rc == 0 ? 0 : static_cast<int>(ExitCode::usage);
  }

  try {
    parallel::World world(&argc, &argv);
    try {
      if (*train) return run_train(world, config_path, overrides);
      if (*prepare) return run_prepare(text_path, out_path);
    } catch (const Error& e) {
      if (world.is_root() || e.code() != ExitCode::usage) {
        std::fprintf(stderr, "error: %s\n", e.what());
        if (!e.hint().empty()) std::fprintf(stderr, "HINT: %s\n", e.hint().c_str());
      }
      return static_cast<int>(e.code());
    }
  } catch (const Error& e) {  // MPI could not start
    std::fprintf(stderr, "error: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\nHINT: this is a bug in nupipe; please report it "
                 "with the command line and config\n", e.what());
    return static_cast<int>(ExitCode::internal);
  }
  return 0;
}
