// checkpointing.cpp: resume resolution, config differences, and the periodic save.
#include "launcher/checkpointing.h"
#include "launcher/report.h"
#include "launcher/async_save.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "checkpoint/catalog.h"
#include "checkpoint/snapshot.h"
#include "checkpoint/reader.h"
#include "checkpoint/writer.h"
#include "parallel/comm/consensus.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/elapsed.h"

#ifndef NUPIPE_VERSION
#define NUPIPE_VERSION "unknown"
#endif

namespace nupipe::launcher {

using runtime::seconds_since;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char* nupipe_version() { return NUPIPE_VERSION; }

namespace {

std::string join(const std::vector<std::string>& lines, const std::string& sep) {
  std::string out;
  for (const std::string& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

// Renames `path` to path + suffix (or + suffix.2, .3, ... when taken); "" when it failed.
std::string set_aside(const std::string& path, const std::string& suffix) {
  for (int i = 1; i < 100; ++i) {
    const std::string to = path + suffix + (i > 1 ? "." + std::to_string(i) : std::string());
    std::error_code ec;
    if (fs::exists(to, ec)) continue;
    fs::rename(path, to, ec);
    return ec ? std::string() : to;
  }
  return {};
}

}  // namespace

void require_writable_checkpoint_dir(const Config& cfg) {
  if (cfg.checkpoint.every <= 0) return;
  const std::string root = cfg.checkpoint_dir();
  const char* hint = "give a writable directory (--set checkpoint.dir=DIR), or train without "
                     "checkpoints (--set checkpoint.every=0)";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    throw usage_error("checkpoint.dir " + root + " cannot be created: " + ec.message(), hint);
  }
  const std::string probe = root + "/.write_probe." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw usage_error("checkpoint.dir " + root + " cannot be written: " + std::strerror(errno),
                      hint);
  }
  const bool wrote = ::write(fd, "x", 1) == 1;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!wrote) {
    throw usage_error("checkpoint.dir " + root + " cannot be written: " + std::strerror(err),
                      hint);
  }
}

ResumePoint find_resume_point(const Config& cfg, parallel::MpiCommunicator& world) {
  ResumePoint rp;
  const std::string root = cfg.checkpoint_dir();
  const std::string& mode = cfg.checkpoint.resume;
  // An unfinished save named explicitly is refused before anything is looked at (rank 0 would
  // otherwise remove it as a leftover, and a complete-looking one was never committed).
  if (mode != "auto" && mode != "never") {
    std::string path = mode;  // as written, without trailing slashes
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const std::string name = fs::path(path).filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      const std::string committed = path.substr(0, path.size() - 4);
      throw checkpoint_error(
          "checkpoint.resume = " + mode + " is an unfinished save (a .tmp directory is one "
          "that never committed): it is never loaded",
          "name a committed checkpoint, e.g. " + committed + " if that save committed later "
          "(nupipe ckpt verify DIR checks one), or resume = \"auto\" for the newest");
    }
  }
  // Rank 0 reads the directory (shared by every rank) and tells the others.
  std::string listing;
  if (world.rank() == 0) {
    for (const std::string& tmp : checkpoint::remove_uncommitted(root)) {
      rp.warnings.push_back("removed " + tmp + ": a save that never committed (it is never "
                            "loaded)");
    }
    for (const checkpoint::CheckpointEntry& e : checkpoint::list_checkpoints(root).committed) {
      listing += e.path + "\n";
    }
  }
  std::vector<std::string> candidates = split_lines(world.broadcast_text(listing));
  rp.checkpoints_exist = !candidates.empty();
  if (mode == "never") {
    if (rp.checkpoints_exist) {
      throw usage_error("checkpoint.resume = \"never\" but " + root + " holds " +
                            std::to_string(candidates.size()) + " checkpoint(s), newest " +
                            candidates.front(),
                        "resume from them with checkpoint.resume = \"auto\", or start a fresh "
                        "run in a new run.dir (--set run.dir=DIR)");
    }
    rp.notes.push_back("checkpoint.resume = \"never\": starting from step 0");
    return rp;
  }
  const bool explicit_path = mode != "auto";
  if (explicit_path) {
    // A missing or mistyped path, or a directory of checkpoints, is named as such (rank 0
    // looks; every rank gets the verdict), never reported as a damaged checkpoint.
    parallel::agree(world, [&] {
      if (world.rank() == 0) {
        checkpoint::require_checkpoint_path(mode, "--set checkpoint.resume={}");
      }
    });
    candidates = {mode};
  }
  if (candidates.empty()) {
    rp.notes.push_back("no checkpoint in " + root + ": starting from step 0");
    return rp;
  }
  std::vector<std::string> damaged;
  for (const std::string& dir : candidates) {
    const auto t0 = Clock::now();
    const std::vector<std::string> problems = checkpoint::verify_checkpoint(dir, world);
    if (!problems.empty()) {
      const std::string what = dir + " is damaged or incomplete:\n    " + join(problems, "\n    ");
      if (explicit_path || cfg.checkpoint.strict) {
        throw checkpoint_error(what, explicit_path
                                         ? "choose another checkpoint (nupipe ckpt verify DIR "
                                           "checks one)"
                                         : "checkpoint.strict = true stops here; set it to "
                                           "false to fall back to the previous checkpoint");
      }
      rp.warnings.push_back(what + "\n  falling back to the previous checkpoint");
      damaged.push_back(dir);
      continue;
    }
    parallel::agree(world, [&] { rp.info = checkpoint::read_info(dir); });
    const auto diffs = checkpoint::model_differences(rp.info.model, cfg.model);
    if (!diffs.empty()) {
      std::string keys;
      for (const auto& d : diffs) {
        keys += "\n    " + d.key + ": checkpoint " + d.saved + ", config " + d.wanted;
      }
      throw checkpoint_error(dir + " holds another model; these keys must match to load it:" +
                                 keys,
                             "set them as the checkpoint has them, or start a fresh run with "
                             "checkpoint.resume = \"never\" in a new run.dir");
    }
    rp.dir = dir;
    char verified[64];
    std::snprintf(verified, sizeof verified, "%.2f s", seconds_since(t0));
    rp.notes.push_back("resuming from " + dir + " (step " + std::to_string(rp.info.state.step) +
                       ", written by " + rp.info.layout.describe() + ", nupipe " +
                       rp.info.nupipe_version + "; checksums verified in " + verified + ")");
    // Checkpoints of this run's directory beyond the resumed step (damaged ones, or a branch
    // abandoned by resuming from an older one) are set aside, never deleted: they would
    // collide with this run's saves and outrank them in retention.
    if (world.rank() == 0) {
      for (const checkpoint::CheckpointEntry& e : checkpoint::list_checkpoints(root).committed) {
        if (e.step <= rp.info.state.step || e.path == dir) continue;
        const bool bad = std::find(damaged.begin(), damaged.end(), e.path) != damaged.end();
        const std::string aside = set_aside(e.path, bad ? ".damaged" : ".abandoned");
        rp.warnings.push_back(e.path + (bad ? " (damaged)" : " (newer than the resumed step)") +
                              (aside.empty() ? ": could not be set aside"
                                             : " set aside as " + aside));
      }
    }
    return rp;
  }
  // Nothing is renamed here: a checkpoint that failed because of a passing I/O error must
  // still be there for the next attempt.
  throw checkpoint_error("every checkpoint in " + root + " is damaged (" + join(damaged, ", ") +
                             ")",
                         "inspect them with `nupipe ckpt verify DIR`; to start over, use a new "
                         "run.dir or checkpoint.resume = \"never\"");
}

SettingChanges describe_changes(const Config& now, const std::string& saved_toml) {
  Config saved;
  try {
    saved = parse_config(saved_toml, "the checkpoint's config");
  } catch (const Error& e) {
    return {std::string("resuming; the checkpoint's config could not be compared with this "
                        "one: ") + e.what(),
            true};
  }
  // Keys that only place the same computation differently (or do not touch it at all);
  // runtime.precision changes the arithmetic itself.
  auto layout_only = [](const std::string& k) {
    if (k == "runtime.precision") return false;
    for (const char* prefix : {"parallel.", "run.", "checkpoint.", "runtime."}) {
      if (k.rfind(prefix, 0) == 0) return true;
    }
    return k == "train.micro_batch" || k == "train.loss_chunk" || k == "train.val_every" ||
           k == "train.val_batches";
  };
  const auto a = key_values(saved), b = key_values(now);
  std::vector<std::string> math, layout;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].second == b[i].second) continue;
    const std::string change = a[i].first + ": " + a[i].second + " -> " + b[i].second;
    (layout_only(a[i].first) ? layout : math).push_back(change);
  }
  if (math.empty() && layout.empty()) return {};
  SettingChanges out;
  out.changes_training = !math.empty();
  if (out.changes_training) {
    out.line = "resuming with changed training settings (from here on not the uninterrupted "
               "run): " + join(math, ", ");
    if (!layout.empty()) out.line += "; layout and run settings: " + join(layout, ", ");
  } else {
    out.line = "resuming with another layout or run settings (the same training): " +
               join(layout, ", ");
  }
  return out;
}

std::string nothing_to_train(const Config& cfg, const ResumePoint& rp) {
  if (rp.dir.empty() || rp.info.state.step < cfg.train.steps) return {};
  const int64_t step = rp.info.state.step;
  const bool explicit_path = cfg.checkpoint.resume != "auto";
  const bool own_ckpt_dir = !cfg.checkpoint.dir.empty();
  const std::string where =
      explicit_path  ? "checkpoint.resume = " + rp.dir + " is at"
      : own_ckpt_dir ? "checkpoint.dir " + cfg.checkpoint.dir + " already holds"
                     : "run.dir " + cfg.run.dir + " already holds";
  std::string of = step == cfg.train.steps
                       ? " of " + std::to_string(cfg.train.steps)
                       : ", beyond train.steps = " + std::to_string(cfg.train.steps);
  std::string out = "nothing to train: " + where + " step " + std::to_string(step) + of;
  if (!explicit_path) out += " (checkpoint " + rp.dir + ")";
  out += "; to continue it, raise train.steps (--set train.steps=M with M > " +
         std::to_string(step) + "); to start a new run, ";
  if (explicit_path) {
    out += "leave checkpoint.resume = \"auto\" and give the run a run.dir of its own "
           "(--set run.dir=DIR)";
  } else if (own_ckpt_dir) {
    out += "give it a checkpoint.dir and run.dir of its own (--set checkpoint.dir=DIR "
           "--set run.dir=DIR)";
  } else {
    out += "give it a run.dir of its own (--set run.dir=DIR)";
  }
  return out;
}

Checkpointer::Checkpointer(const Config& cfg, Stage& stage, parallel::ProcessGroups& groups,
                           spdlog::logger& log, const parallel::Watchdog::Options* watchdog)
    : cfg_(cfg), stage_(stage), groups_(groups), log_(log),
      global_specs_(runtime::stage_specs(stage.model_config,
                                       runtime::StageSlice::whole(stage.model_config))),
      snapshot_(host_memory_) {
  if (cfg.checkpoint.async && cfg.checkpoint.every > 0) {
    NUPIPE_CHECK(watchdog != nullptr, "checkpoint.async needs the watchdog's options");
    async_ = std::make_unique<AsyncSave>(*watchdog);  // collective: the communicator's dup
    // The snapshot's host memory, taken (and paged in) now rather than at the first save.
    snapshot_.reserve({&stage.model->params(), &stage.optimizer->adamw(),
                       groups.topology().replica(), cfg.parallel.data});
  }
}

Checkpointer::~Checkpointer() = default;

bool Checkpointer::due(int64_t steps_done) const {
  const int every = cfg_.checkpoint.every;
  return every > 0 && (steps_done % every == 0 || steps_done == cfg_.train.steps);
}

int64_t Checkpointer::snapshot_bytes_predicted() const {
  return checkpoint::snapshot_bytes(stage_.model->params().specs(), stage_.model->params().numel(),
                                    groups_.topology().replica(), cfg_.parallel.data);
}

checkpoint::CheckpointInfo Checkpointer::info_of(const checkpoint::TrainingState& state) const {
  checkpoint::CheckpointInfo info;
  info.state = state;
  info.model = stage_.model_config;
  info.layout = {cfg_.parallel.pipeline, cfg_.parallel.data, cfg_.parallel.zero,
                 parallel::format_stage_layers(
                     {parallel::StageLayersSpec::Kind::explicit_list,
                      parallel::layer_counts(stage_.layout)})};  // "auto" as resolved
  info.config_toml = to_toml(cfg_);
  info.nupipe_version = nupipe_version();
  return info;
}

Checkpointer::Committed Checkpointer::commit(const checkpoint::CheckpointInfo& info,
                                             const checkpoint::RankPart& part,
                                             parallel::MpiCommunicator& comm) const {
  const std::string root = cfg_.checkpoint_dir();
  Committed c;
  const checkpoint::SaveResult r = checkpoint::save_checkpoint(root, info, global_specs_, part, comm);
  c.dir = r.dir;
  c.bytes = r.bytes;
  c.save_s = r.seconds;
  // Read back what was committed before anything older may go.
  const auto t_verify = Clock::now();
  const std::vector<std::string> problems = checkpoint::verify_checkpoint(r.dir, comm);
  if (!problems.empty()) {
    if (comm.rank() == 0) {  // uncommit it: a .tmp is never loaded and is cleaned up
      std::error_code ec;
      fs::rename(r.dir, r.dir + ".tmp", ec);
    }
    throw checkpoint_error("the checkpoint just written does not read back intact: " +
                               join(problems, "; "),
                           "the disk or filesystem corrupts data; the previous checkpoint is "
                           "intact");
  }
  c.verify_s = seconds_since(t_verify);
  if (comm.rank() == 0) {
    c.deleted = checkpoint::apply_retention(root, cfg_.checkpoint.keep, cfg_.checkpoint.keep_every);
  }
  return c;
}

void Checkpointer::log_committed(const char* why, int64_t step, const Committed& c,
                                 const std::string& extra) const {
  const int keep_every = cfg_.checkpoint.keep_every;
  const std::string milestone =
      checkpoint::is_milestone(step, keep_every)
          ? fmt::format(" | milestone (checkpoint.keep_every = {}): never removed by "
                        "retention", keep_every)
          : std::string();
  const std::string removed =
      c.deleted.empty()
          ? std::string()
          : fmt::format(" | removed {} older (checkpoint.keep = {}{})", c.deleted.size(),
                        cfg_.checkpoint.keep,
                        keep_every > 0
                            ? fmt::format("; milestones every {} steps kept", keep_every)
                            : std::string());
  log_.info("checkpoint ({}): {} | {:.1f} MB in {:.2f} s ({:.0f} MB/s), read back in "
            "{:.2f} s{}{}{}",
            why, c.dir, c.bytes / 1e6, c.save_s, c.bytes / 1e6 / std::max(c.save_s, 1e-9),
            c.verify_s, milestone, removed, extra);
}

bool Checkpointer::failed(const Error& e, int64_t step) {
  if (e.code() != ExitCode::checkpoint || cfg_.checkpoint.on_write_error == "stop") throw e;
  log_.error("checkpoint of step {} failed: {}; previous checkpoints are intact; training "
             "goes on (checkpoint.on_write_error = \"continue\") and tries again at the next "
             "interval",
             step, e.what());
  return false;
}

bool Checkpointer::save(const checkpoint::TrainingState& state, const char* why) {
  if (async_) return save_async(state, why);
  const auto t0 = Clock::now();
  const checkpoint::RankPart part{&stage_.model->params(), &stage_.optimizer->adamw(),
                                  groups_.topology().replica(), cfg_.parallel.data};
  try {
    const Committed c = commit(info_of(state), part, groups_.world_mpi());
    seconds_ += seconds_since(t0);
    ++saves_;
    log_committed(why, state.step, c, "");
    return true;
  } catch (const Error& e) {
    return failed(e, state.step);
  }
}

// ---- checkpoint.async -------------------------------------------------------------------

bool Checkpointer::save_async(const checkpoint::TrainingState& state, const char* why) {
  bool previous_ok = true;
  if (async_->pending()) {  // at most one save in flight: this one waits for it
    const int64_t previous = async_->step();
    const double waited = async_->join();
    waited_s_ += waited;
    seconds_ += waited;
    pending_stall_s_ += waited;  // the previous save's stall: it made this one wait
    log_.warn("checkpoint: the background save of step {} was still being written when step "
              "{} was due: training waited {:.3f} s for it (at most one save is in flight; "
              "a longer checkpoint.every avoids the wait)",
              previous, state.step, waited);
    previous_ok = collect();
  }
  const auto t_start = Clock::now();
  // The thread copies the live weights and moments into the snapshot while the next step's
  // forward and backward only read them; before_update() holds that step's optimizer update
  // until the copy is done. The writer then reads the snapshot only.
  const checkpoint::RankPart live{&stage_.model->params(), &stage_.optimizer->adamw(),
                                  groups_.topology().replica(), cfg_.parallel.data};
  checkpoint::RankPart part = live;
  part.store = nullptr;
  part.adamw = nullptr;
  part.snapshot = &snapshot_;
  pending_why_ = why;
  async_->start(
      state.step, [this, live] { snapshot_.take(live); },
      [this, info = info_of(state), part](parallel::MpiCommunicator& c) {
        pending_ = commit(info, part, c);
      });
  const double stall = seconds_since(t_start);  // the thread's start
  pending_stall_s_ = stall;
  seconds_ += stall;
  const bool interval = std::strcmp(why, "interval") == 0;  // else the run's last save
  log_.info("checkpoint ({}): step {}: a {:.1f} MB snapshot to host memory, then written, "
            "checksummed and committed, by thread {}{}",
            why, state.step, static_cast<double>(snapshot_.bytes()) / 1e6,
            AsyncSave::kThreadName,
            interval ? " while training goes on" : ", waited for before the run ends");
  return previous_ok;
}

void Checkpointer::before_update() {
  if (!async_) return;
  const double waited = async_->wait_snapshot();
  snapshot_s_ += waited;
  pending_stall_s_ += waited;
  seconds_ += waited;
}

bool Checkpointer::collect() {
  const auto t0 = Clock::now();
  const int64_t step = async_->step();
  // Every rank's job agreed with the others over its own communicator already; this
  // agreement makes the training threads take one verdict at the same step whatever it was.
  try {
    parallel::agree(groups_.world(), [&] {
      if (async_->error()) throw *async_->error();
    });
  } catch (const Error& e) {
    seconds_ += seconds_since(t0);
    return failed(e, step);
  }
  ++saves_;
  const double stall = pending_stall_s_ + seconds_since(t0);
  seconds_ += seconds_since(t0);
  log_committed(pending_why_, step, pending_,
                fmt::format(" | in the background ({:.2f} s on thread {}, of which the "
                            "snapshot {:.3f} s); training stalled {:.3f} s for this save",
                            async_->job_seconds(), AsyncSave::kThreadName,
                            async_->snapshot_seconds(), stall));
  return true;
}

bool Checkpointer::poll() {
  if (!async_ || !async_->pending()) return true;
  const auto t0 = Clock::now();
  const bool done = async_->all_done(groups_.world());
  pending_stall_s_ += seconds_since(t0);
  seconds_ += seconds_since(t0);
  if (!done) return true;
  async_->join();
  return collect();
}

bool Checkpointer::finish() {
  if (!async_ || !async_->pending()) return true;
  const auto t0 = Clock::now();
  const double waited = async_->join();
  waited_s_ += waited;
  pending_stall_s_ += seconds_since(t0);
  seconds_ += seconds_since(t0);
  log_.info("checkpoint: waited {:.3f} s for the background save of step {} to commit",
            waited, async_->step());
  return collect();
}

}  // namespace nupipe::launcher
