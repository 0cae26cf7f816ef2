// run_dir.cpp: run directory creation and its first files.
#include "launcher/run_dir.h"

#include <filesystem>
#include <fstream>

#include <spdlog/sinks/basic_file_sink.h>

#include "runtime/error.h"

namespace nupipe::launcher {

namespace fs = std::filesystem;

void prepare_run_dir(const Config& config, spdlog::logger& log) {
  const fs::path dir(config.run.dir);
  std::error_code ec;
  if (fs::exists(dir / "metrics.jsonl", ec) && fs::file_size(dir / "metrics.jsonl", ec) > 0) {
    throw usage_error("run.dir " + dir.string() + " already holds a run (metrics.jsonl)",
                      "choose a new directory with --set run.dir=DIR, or delete the old run");
  }
  fs::create_directories(dir, ec);
  if (ec) {
    throw usage_error("cannot create run.dir " + dir.string() + ": " + ec.message(),
                      "choose a writable directory with --set run.dir=DIR");
  }
  const fs::path config_path = dir / "config.toml";
  std::ofstream(config_path) << to_toml(config);
  log.sinks().push_back(
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((dir / "train.log").string()));
  log.info("run directory {}", fs::absolute(dir).string());
}

}  // namespace nupipe::launcher
