// run_dir.h: preparing run.dir once the run is known to be valid: the directory, the log
// file sink and the effective config, and metrics.jsonl made to end where training resumes.
#pragma once

#include <cstdint>
#include <memory>

#include <spdlog/logger.h>

#include "launcher/config.h"

namespace nupipe::launcher {

// Creates run.dir (and parents), adds run.dir/train.log to the logger (appending, every line
// flushed as logged) and writes run.dir/config.toml. metrics.jsonl keeps exactly the records
// of steps up to `first_step` (the resumed run appends from there: no step is missing or
// twice); starting at step 0 in a directory that holds metrics renames them to
// metrics.jsonl.N instead. A run.dir that already holds metrics is refused (exit 2) only when
// nothing may continue it: `may_continue` false (checkpoint.resume = "never").
void prepare_run_dir(const Config& config, spdlog::logger& log, int64_t first_step,
                     bool may_continue);

}  // namespace nupipe::launcher
