// outcome.cpp: the outcome record: its JSON, the atomic write, and the last log line.
#include "launcher/outcome.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "checkpoint/catalog.h"
#include "launcher/clock_text.h"
#include "launcher/signals.h"
#include "runtime/posix_file.h"

namespace nupipe::launcher {

namespace {

// A multi-line reason on one line, whole: its lines trimmed, each after the first joined by
// a space when the one before ends in ':' (a list follows it), else by "; ".
std::string one_line(const std::string& s) {
  std::string out;
  size_t at = 0;
  while (at <= s.size()) {
    size_t end = s.find('\n', at);
    if (end == std::string::npos) end = s.size();
    size_t b = at, e = end;
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
    if (e > b) {
      if (!out.empty()) out += out.back() == ':' ? " " : "; ";
      out.append(s, b, e - b);
    }
    at = end + 1;
  }
  return out;
}

// The number after `key` in `s` (digits only), or -1.
int number_after(const std::string& s, const std::string& key) {
  const size_t at = s.find(key);
  if (at == std::string::npos) return -1;
  size_t i = at + key.size();
  int n = -1;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    n = (n < 0 ? 0 : n * 10) + (s[i] - '0');
    ++i;
  }
  return n;
}

}  // namespace

int failed_rank_in(const std::string& message) {
  if (message.rfind("rank ", 0) == 0) {
    const int r = number_after(message, "rank ");
    if (r >= 0 && message.find(" failed", 5) == 5 + std::to_string(r).size()) return r;
  }
  return number_after(message, "not answering: rank ");
}

OutcomeRecorder::OutcomeRecorder(const parallel::World& world, int64_t steps,
                                 std::string checkpoint_dir)
    : world_(world), steps_(steps), checkpoint_dir_(std::move(checkpoint_dir)),
      started_unix_(unix_now()) {}

OutcomeRecorder::~OutcomeRecorder() = default;

void OutcomeRecorder::hold(std::unique_ptr<RunLock> lock) {
  std::lock_guard<std::mutex> g(mu_);
  lock_ = std::move(lock);
}

void OutcomeRecorder::step_done(int64_t step) {
  std::lock_guard<std::mutex> g(mu_);
  step_ = step;
}

std::string OutcomeRecorder::path() const {
  return lock_ ? lock_->dir() + "/outcome.json" : std::string();
}

void OutcomeRecorder::finished(bool stopped, spdlog::logger& log) {
  std::lock_guard<std::mutex> g(mu_);
  if (!world_.is_root()) return;
  Outcome o;
  o.status = stopped ? "preempted" : "finished";
  if (stopped) {
    // The signal reached rank 0, or another rank (the request travels with the step).
    o.signal = stop_signal() ? signal_name(stop_signal()) : "a signal on another rank";
    o.reason = "stopped by " + o.signal + " after step " + std::to_string(step_);
    o.hint = "relaunch the same command to continue from the checkpoint";
  }
  write(std::move(o), log);
}

void OutcomeRecorder::failed(ExitCode code, const std::string& message, const std::string& hint,
                             spdlog::logger& log) {
  std::lock_guard<std::mutex> g(mu_);
  const bool own = code == ExitCode::peer || code == ExitCode::internal;
  if (!world_.is_root() && !own) return;  // rank 0 speaks for a verdict every rank shares
  Outcome o;
  o.status = "failed";
  o.exit_code = static_cast<int>(code);
  o.failed_rank = failed_rank_in(message);
  if (o.failed_rank < 0 && (code != ExitCode::peer || world_.size() == 1)) {
    o.failed_rank = world_.rank();  // its own failure
  }
  o.reason = message;
  // The consensus verdict on a rank that did not fail points at that rank's own message.
  const std::string above = "(its message is printed above)";
  if (const size_t at = o.reason.find(above); at != std::string::npos) {
    o.reason.replace(at, above.size(), "(its own message is in the job's output, from that rank)");
  }
  o.hint = hint;
  write(std::move(o), log);
}

void OutcomeRecorder::peer_failure(const std::string& report, spdlog::logger& log) {
  // The process ends right after this: a main thread stuck while recording (a hung
  // filesystem) must not keep it from ending.
  // At most 1 s, by try_lock every millisecond (not std::timed_mutex: its waits go through
  // pthread_mutex_clocklock, which ThreadSanitizer does not see, and it then reports the unlock).
  std::unique_lock<std::mutex> g(mu_, std::defer_lock);
  for (int ms = 0; ms < 1000 && !g.try_lock(); ++ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!g.owns_lock()) return;
  Outcome o;
  o.status = "failed";
  o.exit_code = static_cast<int>(ExitCode::peer);
  const size_t h = report.find("\nHINT: ");
  o.reason = report.substr(0, h);
  o.hint = h == std::string::npos ? "" : report.substr(h + 7);
  o.failed_rank = failed_rank_in(o.reason);
  write(std::move(o), log);
}

void OutcomeRecorder::write(Outcome o, spdlog::logger& log) {
  if (!lock_ || written_) return;  // not holding run.dir, or already said
  written_ = true;
  o.step = step_;
  o.steps = steps_;
  o.reported_by = world_.rank();
  const checkpoint::Catalog cat = checkpoint::list_checkpoints(checkpoint_dir_);
  if (!cat.committed.empty()) {
    o.checkpoint = printable(std::filesystem::absolute(cat.committed.front().path).string());
    o.checkpoint_step = cat.committed.front().step;
  }
  const double ended = unix_now();
  const LockRecord& run = lock_->record();
  nlohmann::ordered_json j;  // in this order: what a reader looks for first, first
  j["status"] = o.status;
  j["exit_code"] = o.exit_code;
  j["step"] = o.step;
  j["steps"] = o.steps;
  j["checkpoint"] = o.checkpoint.empty() ? nullptr : nlohmann::ordered_json(o.checkpoint);
  j["checkpoint_step"] =
      o.checkpoint_step < 0 ? nullptr : nlohmann::ordered_json(o.checkpoint_step);
  j["failed_rank"] = o.failed_rank < 0 ? nullptr : nlohmann::ordered_json(o.failed_rank);
  j["reported_by"] = o.reported_by;
  j["signal"] = o.signal.empty() ? nullptr : nlohmann::ordered_json(o.signal);
  j["reason"] = o.reason;
  j["hint"] = o.hint;
  j["run_id"] = run.id;
  j["host"] = world_.host();
  j["pid"] = static_cast<int>(::getpid());
  j["ranks"] = world_.size();
  j["started_at"] = utc_text(started_unix_);
  j["ended_at"] = utc_text(ended);
  j["elapsed_s"] = std::round((ended - started_unix_) * 1000.0) / 1000.0;
  // Every string above is printable() (Error's messages are); `replace` is the last guard, so
  // that no byte can keep the record from being written.
  const std::string text =
      j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";

  // One temporary file per rank: survivors of a peer failure may write at the same moment.
  // No fsync on the peer-failure path: a hung filesystem must not keep the rank from exiting.
  const std::string final_path = path();
  // The first failure recorded for this launch stays: a rank that ends after it (a survivor
  // woken into a dead job, say) knows less of what happened first.
  std::string first_by;
  {
    try {
      std::ifstream in(final_path);
      const nlohmann::json old = nlohmann::json::parse(in);
      if (old.at("run_id") == run.id && old.at("status") == "failed" &&
          old.at("reported_by") != o.reported_by) {
        first_by = std::to_string(old.at("reported_by").get<int>());
      }
    } catch (const std::exception&) {  // none yet, or unreadable: write ours
    }
  }
  if (!first_by.empty()) {
    log.error("outcome: {} (exit {}) on rank {}, after rank {} recorded a failure in {}; that "
              "record stays{}", o.status, o.exit_code, o.reported_by, first_by, final_path,
              o.reason.empty() ? std::string() : ": " + one_line(o.reason));
    log.flush();
    return;
  }
  const std::string tmp = final_path + ".tmp." + std::to_string(world_.rank());
  std::string problem;
  {
    runtime::Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0 || !runtime::write_all(fd.get(), text.data(), text.size()) ||
        (o.exit_code != static_cast<int>(ExitCode::peer) && ::fsync(fd.get()) != 0) ||
        fd.close() != 0 || ::rename(tmp.c_str(), final_path.c_str()) != 0) {
      problem = runtime::errno_text(errno);
      ::unlink(tmp.c_str());
    }
  }

  std::string line = "outcome: " + o.status + " (exit " + std::to_string(o.exit_code) +
                     ") at step " + std::to_string(o.step) + " of " + std::to_string(o.steps);
  if (!o.signal.empty()) line += ", stopped by " + o.signal;
  if (o.failed_rank >= 0) line += ", rank " + std::to_string(o.failed_rank) + " failed first";
  line += o.checkpoint.empty() ? "; no checkpoint"
                               : "; last checkpoint " + o.checkpoint;
  if (o.status == "failed") line += "; " + one_line(o.reason);
  line += problem.empty() ? "; recorded in " + final_path
                          : "; could not be recorded in " + final_path + ": " + problem;
  if (o.status == "failed") log.error("{}", line);
  else log.info("{}", line);
  log.flush();
}

}  // namespace nupipe::launcher
