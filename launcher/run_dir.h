// run_dir.h: preparing run.dir once the run is known to be valid: the directory, the
// log file sink and the effective config. A run never overwrites another run's metrics.
#pragma once

#include <memory>

#include <spdlog/logger.h>

#include "launcher/config.h"

namespace nupipe::launcher {

// Creates run.dir (and parents), refuses one that already holds metrics.jsonl, adds
// run.dir/train.log to the logger and writes run.dir/config.toml.
void prepare_run_dir(const Config& config, spdlog::logger& log);

}  // namespace nupipe::launcher
