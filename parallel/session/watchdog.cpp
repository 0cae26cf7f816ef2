// watchdog.cpp: the watchdog thread: heartbeats, the deadline of the current wait, and the
// report and exit (code 5) when it passes.
#include "parallel/session/watchdog.h"

#include <pthread.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace nupipe::parallel {

namespace {
constexpr int64_t kNoBeat = -1;    // read_beats: no beat of this job (yet)
constexpr int64_t kTimedOut = -2;  // read_beats: the peer's own wait timed out (it is alive)
constexpr size_t kMaxChecked = 32;  // heartbeat files read per check of a long wait

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::string beat_path(const std::string& dir, int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/rank_%05d", rank);
  return dir + buf;
}

std::string beat_line(int64_t counter, bool timed_out, const std::string& job,
                      const std::string& host) {
  // "<counter> <state> <job> <host> <pid>": state "ok", or "timed-out" once this rank's own
  // wait has timed out (it is alive, and a victim rather than the cause). Every field but
  // the state keeps its width, so rewriting in place never leaves a longer line's tail.
  char buf[320];
  const int n = std::snprintf(buf, sizeof buf, "%020lld %-9s %s %s %d\n",
                              static_cast<long long>(counter), timed_out ? "timed-out" : "ok",
                              job.empty() ? "-" : job.c_str(), host.c_str(),
                              static_cast<int>(::getpid()));
  return n > 0 ? std::string(buf, static_cast<size_t>(std::min<int>(n, sizeof buf - 1)))
               : std::string();
}

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

Watchdog::Watchdog(Options options) : opt_(std::move(options)) {
  thread_ = std::thread([this] { loop(); });
  // Named for ps/top/gdb (at most 15 characters): the main thread's watchdog, or a thread's.
  const std::string name = opt_.thread.empty() ? "nupipe-watchdog" : "wd-" + opt_.thread;
  pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (beat_fd_ >= 0) ::close(beat_fd_);
}

std::string Watchdog::job_token(const std::string& host) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return (host.empty() ? std::string("host") : host) + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(ns);
}

void Watchdog::set_heartbeat_dir(const std::string& dir, const std::string& job) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::lock_guard<std::mutex> lock(mu_);
  if (beat_fd_ >= 0) return;  // once only: the thread may be writing a beat right now
  const int fd =
      ::open(beat_path(dir, opt_.rank).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  // The first beat before anyone can wait on this rank for long: from here on the file says
  // this job, never an earlier one's state.
  const std::string line = beat_line(1, false, job, opt_.host);
  if (::pwrite(fd, line.data(), line.size(), 0) < 0) beat_failed_ = true;
  beats_ = 1;
  job_ = job;
  beat_fd_ = fd;
  beat_dir_ = dir;
}

Watchdog::Scope::Scope(Watchdog* wd, const char* what, const std::string* group,
                       const std::vector<int>* peers, int peer)
    : wd_(wd) {
  if (!wd_) return;
  std::lock_guard<std::mutex> lock(wd_->mu_);
  saved_ = {wd_->armed_, wd_->what_, wd_->group_, wd_->peers_, wd_->peer_};
  wd_->armed_ = true;
  ++wd_->generation_;
  wd_->since_ = Clock::now();
  wd_->what_ = what;
  wd_->group_ = group;
  wd_->peers_ = peers;
  wd_->peer_ = peer;
}

Watchdog::Scope::~Scope() {
  if (!wd_) return;
  std::lock_guard<std::mutex> lock(wd_->mu_);
  wd_->armed_ = saved_.armed;
  ++wd_->generation_;
  wd_->since_ = Clock::now();
  wd_->what_ = saved_.what;
  wd_->group_ = saved_.group;
  wd_->peers_ = saved_.peers;
  wd_->peer_ = saved_.peer;
}

void Watchdog::beat(bool timed_out) {
  if (beat_fd_ < 0 || beat_failed_) return;
  const std::string line = beat_line(++beats_, timed_out, job_, opt_.host);
  if (::pwrite(beat_fd_, line.data(), line.size(), 0) < 0) {
    beat_failed_ = true;  // a full or vanished disk: stop beating rather than fail training
  }
}

std::vector<int64_t> Watchdog::read_beats(const std::vector<int>& ranks) const {
  std::vector<int64_t> out;
  for (int r : ranks) {
    int64_t v = kNoBeat;
    if (std::FILE* f = std::fopen(beat_path(beat_dir_, r).c_str(), "r")) {
      long long x = 0;
      char state[16] = {0};
      char job[256] = {0};
      if (std::fscanf(f, "%lld %15s %255s", &x, state, job) == 3 &&
          job_ == (std::string(job) == "-" ? std::string() : std::string(job))) {
        v = std::string(state) == "timed-out" ? kTimedOut : x;
      }
      std::fclose(f);
    }
    out.push_back(v);
  }
  return out;
}

std::string Watchdog::silent_verdict(const WaitState& w) const {
  if (beat_dir_.empty() || w.peers.empty()) return {};
  std::vector<int64_t> a = w.sample;
  const double span = w.sample.empty() ? 0.0 : seconds_between(w.sample_at, Clock::now());
  if (span < kBeatPeriodS * 2) {
    // Not sampled early enough (a short timeout, or the wait's start was missed): sample now.
    // This only happens when T < kSampleS + kTickS, and costs at most kSampleS.
    if (a.empty()) a = read_beats(w.peers);
    std::this_thread::sleep_for(std::chrono::duration<double>(kBeatPeriodS * 2 - span));
  }
  const std::vector<int64_t> b = read_beats(w.peers);
  std::string gone;
  for (size_t i = 0; i < w.peers.size(); ++i) {
    if (a[i] == b[i] && b[i] != kTimedOut) {
      if (!gone.empty()) gone += ", ";
      gone += "rank " + std::to_string(w.peers[i]);
    }
  }
  return gone.empty() ? "; every peer's heartbeat still moves (a peer is alive but stuck, or "
                        "the network between us failed)"
                      : "; not answering: " + gone + " (heartbeat stopped)";
}

void Watchdog::loop() {
  const double limit = opt_.timeout_s;  // rule 1: never before T
  const double sample_from = std::max(0.0, limit - kSampleS);
  const auto tick = std::chrono::duration<double>(kTickS);
  auto last_beat = Clock::now();
  WaitState w;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, tick);
    if (stop_) break;
    const auto now = Clock::now();
    if (seconds_between(last_beat, now) >= kBeatPeriodS) {
      // The file write happens unlocked: a slow filesystem must never hold up the main
      // thread's next collective (which takes the lock to arm a Scope).
      lock.unlock();
      beat(false);
      lock.lock();
      last_beat = now;
    }
    if (!armed_) continue;
    if (w.generation != generation_) {  // a new wait: what it waits for, nothing sampled yet
      w = WaitState{};
      w.generation = generation_;
      if (peer_ >= 0) w.peers.push_back(peer_);
      else if (peers_) for (int r : *peers_) if (r != opt_.rank) w.peers.push_back(r);
    }
    const double waited = seconds_between(since_, now);
    const uint64_t generation = generation_;
    auto describe = [&] {
      return std::string(what_ ? what_ : "a wait on peers") +
             (group_ ? " on the " + *group_ : std::string());
    };
    const bool readable = !beat_dir_.empty() && !w.peers.empty();
    if (waited >= limit) {
      const std::string what = describe();
      lock.unlock();
      fire(what, waited, w.peers, silent_verdict(w));
      return;
    }
    if (!readable) continue;
    if (w.sample.empty() && waited >= sample_from) {
      lock.unlock();
      w.sample = read_beats(w.peers);
      w.sample_at = Clock::now();
      lock.lock();
      continue;
    }
    if (job_.empty() || waited < kCheckS || seconds_between(w.last_check, now) < kCheckS) {
      continue;
    }
    // Rule 2: has a peer of this wait given up? (Large groups a slice at a time.)
    std::vector<int> slice;
    for (size_t i = 0; i < std::min(kMaxChecked, w.peers.size()); ++i) {
      slice.push_back(w.peers[(w.next_check + i) % w.peers.size()]);
    }
    w.next_check = (w.next_check + slice.size()) % w.peers.size();
    w.last_check = now;
    lock.unlock();
    const std::vector<int64_t> beats = read_beats(slice);
    lock.lock();
    std::string gave_up;
    for (size_t i = 0; i < slice.size(); ++i) {
      if (beats[i] != kTimedOut) continue;
      gave_up += (gave_up.empty() ? "rank " : ", rank ") + std::to_string(slice[i]);
    }
    if (gave_up.empty() || generation != generation_ || !armed_) continue;  // it answered
    const std::string what = describe();
    const double waited_now = seconds_between(since_, Clock::now());
    lock.unlock();
    fire(what, waited_now, w.peers,
         "; " + gave_up + " gave up waiting on its own peers (exit 5) and will not answer, so "
         "this rank does not wait out the timeout (the silent peer is named in the first "
         "report)");
    return;
  }
}

void Watchdog::fire(const std::string& what, double waited_s, const std::vector<int>& peers,
                    const std::string& verdict) {
  std::string ranks;
  for (int r : peers) {
    if (!ranks.empty()) ranks += ",";
    ranks += std::to_string(r);
  }
  beat(true);  // peers see this rank as alive (timed out, not the cause), and follow it
  char head[160];
  std::snprintf(head, sizeof head, "rank %d on %s%s%s%s: no progress for %.1f s in ", opt_.rank,
                opt_.host.c_str(), opt_.thread.empty() ? "" : " (thread ",
                opt_.thread.c_str(), opt_.thread.empty() ? "" : ")", waited_s);
  const std::string message =
      std::string(head) + what + (ranks.empty() ? "" : " (waiting for rank(s) " + ranks + ")") +
      verdict + "; runtime.peer_timeout_s = " + fmt_seconds(opt_.timeout_s) +
      "; exiting with code 5";
  const char* hint = "a peer failed or froze; relaunch the same command to resume from the last "
                     "checkpoint (docs/sre-runbook.md)";
  if (opt_.report) {
    opt_.report(message + "\nHINT: " + hint);
  } else {
    std::fprintf(stderr, "error: %s\nHINT: %s\n", message.c_str(), hint);
    std::fflush(stderr);
  }
  if (opt_.exit) {
    opt_.exit(5);
    return;
  }
  std::_Exit(5);
}

}  // namespace nupipe::parallel
