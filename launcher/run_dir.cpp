// run_dir.cpp: run directory creation, its first files, and metrics.jsonl cut to the resume.
#include "launcher/run_dir.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/basic_file_sink.h>

#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::launcher {

namespace fs = std::filesystem;

namespace {

// Keeps the whole lines of records with step <= first_step (a record's step counts the steps
// completed, as checkpoints do); returns {kept, dropped}. A torn last line (the process died
// while writing it) is dropped.
std::pair<int, int> cut_metrics(const fs::path& path, int64_t first_step) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  std::string kept;
  int n_kept = 0, n_dropped = 0;
  size_t start = 0;
  while (start < all.size()) {
    const size_t nl = all.find('\n', start);
    if (nl == std::string::npos) {  // no newline: never completely written
      ++n_dropped;
      break;
    }
    const std::string line = all.substr(start, nl - start);
    start = nl + 1;
    bool keep = false;
    try {
      const nlohmann::json rec = nlohmann::json::parse(line);
      keep = rec.at("step").get<int64_t>() <= first_step;
    } catch (const nlohmann::json::exception&) {
    }
    if (keep) {
      kept += line + "\n";
      ++n_kept;
    } else {
      ++n_dropped;
    }
  }
  if (n_dropped > 0) {
    std::string step;
    if (int err = runtime::write_file_atomic(path.string(), kept, &step)) {
      throw usage_error("cannot rewrite " + path.string() + ": " + step + ": " +
                            runtime::errno_text(err),
                        "check that run.dir is writable and has free space");
    }
  }
  return {n_kept, n_dropped};
}

}  // namespace

void prepare_run_dir(const Config& config, spdlog::logger& log, int64_t first_step,
                     bool may_continue) {
  const fs::path dir(config.run.dir);
  const fs::path metrics = dir / "metrics.jsonl";
  std::error_code ec;
  const bool has_metrics = fs::exists(metrics, ec) && fs::file_size(metrics, ec) > 0;
  if (has_metrics && !may_continue) {
    throw usage_error("run.dir " + dir.string() + " already holds a run (metrics.jsonl) and "
                      "checkpoint.resume = \"never\"",
                      "choose a new directory with --set run.dir=DIR, delete the old run, or "
                      "continue it with checkpoint.resume = \"auto\"");
  }
  fs::create_directories(dir, ec);
  if (ec) {
    throw usage_error("cannot create run.dir " + dir.string() + ": " + ec.message(),
                      "choose a writable directory with --set run.dir=DIR");
  }
  std::pair<int, int> cut{0, 0};
  std::string rotated;
  if (has_metrics && first_step == 0) {
    // Starting over in a directory that holds a run with no checkpoint to continue from (it
    // died before its first one, or never saved): its records are kept, renamed.
    for (int i = 1; rotated.empty() && i < 1000; ++i) {
      const fs::path to = dir / ("metrics.jsonl." + std::to_string(i));
      if (!fs::exists(to, ec)) {
        fs::rename(metrics, to, ec);
        if (ec) {
          throw usage_error("cannot rename " + metrics.string() + ": " + ec.message(),
                            "check that run.dir is writable");
        }
        rotated = to.string();
      }
    }
  } else if (has_metrics) {
    cut = cut_metrics(metrics, first_step);
  }
  std::string step;
  if (int err = runtime::write_file_atomic((dir / "config.toml").string(), to_toml(config),
                                           &step)) {
    throw usage_error("cannot write " + (dir / "config.toml").string() + ": " + step + ": " +
                          runtime::errno_text(err),
                      "check that run.dir is writable and has free space");
  }
  log.sinks().push_back(
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((dir / "train.log").string()));
  // Every line reaches the file as it is logged: after a kill -9 the log ends with the last
  // line written, whole (the file sink is block-buffered otherwise).
  log.flush_on(spdlog::level::trace);
  log.info("run directory {}", fs::absolute(dir).string());
  if (!rotated.empty()) {
    log.warn("run.dir held the metrics of an earlier run with no checkpoint to continue from: "
             "kept as {}; this run starts at step 0",
             rotated);
  }
  if (cut.second > 0) {
    log.info("metrics.jsonl: kept {} record(s) of steps up to {}, dropped {} logged after the "
             "checkpoint by the interrupted run",
             cut.first, first_step, cut.second);
  }
}

}  // namespace nupipe::launcher
