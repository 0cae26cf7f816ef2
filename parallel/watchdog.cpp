// watchdog.cpp: the watchdog thread: heartbeats, the deadline of the current wait, and the
// report and exit (code 5) when it passes.
#include "parallel/watchdog.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace nupipe::parallel {

namespace {
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr double kBeatPeriodS = 0.5;
constexpr double kSampleS = 1.2;  // a peer whose counter does not move for this long is gone
constexpr int64_t kTimedOut = -2;  // read_beats: the peer's own wait timed out (it is alive)

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
}  // namespace

Watchdog::Watchdog(Options options) : opt_(std::move(options)) {
  thread_ = std::thread([this] { loop(); });
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

void Watchdog::set_heartbeat_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const int fd = ::open(beat_path(dir, opt_.rank).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  std::lock_guard<std::mutex> lock(mu_);
  if (beat_fd_ >= 0) {  // once only: the thread may be writing the first one right now
    if (fd >= 0) ::close(fd);
    return;
  }
  beat_fd_ = fd;
  beat_dir_ = fd >= 0 ? dir : std::string();
}

Watchdog::Scope::Scope(Watchdog* wd, const char* what, const std::string* group,
                       const std::vector<int>* peers, int peer)
    : wd_(wd) {
  if (!wd_) return;
  std::lock_guard<std::mutex> lock(wd_->mu_);
  saved_ = {wd_->armed_, wd_->what_, wd_->group_, wd_->peers_, wd_->peer_};
  wd_->armed_ = true;
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
  wd_->since_ = Clock::now();
  wd_->what_ = saved_.what;
  wd_->group_ = saved_.group;
  wd_->peers_ = saved_.peers;
  wd_->peer_ = saved_.peer;
}

void Watchdog::beat(bool timed_out) {
  if (beat_fd_ < 0 || beat_failed_) return;
  char buf[160];
  // "<counter> <state> <host> <pid>": state "ok", or "timed-out" once this rank's own wait
  // has timed out (it is alive, and a victim rather than the cause).
  const int n = std::snprintf(buf, sizeof buf, "%020lld %-9s %s %d\n",
                              static_cast<long long>(++beats_), timed_out ? "timed-out" : "ok",
                              opt_.host.c_str(), static_cast<int>(::getpid()));
  if (n > 0 && ::pwrite(beat_fd_, buf, static_cast<size_t>(n), 0) < 0) {
    beat_failed_ = true;  // a full or vanished disk: stop beating rather than fail training
  }
}

std::vector<int64_t> Watchdog::read_beats(const std::vector<int>& ranks) const {
  std::vector<int64_t> out;
  for (int r : ranks) {
    int64_t v = -1;
    if (std::FILE* f = std::fopen(beat_path(beat_dir_, r).c_str(), "r")) {
      long long x = 0;
      char state[16] = {0};
      if (std::fscanf(f, "%lld %15s", &x, state) == 2) {
        v = std::string(state) == "timed-out" ? kTimedOut : x;
      }
      std::fclose(f);
    }
    out.push_back(v);
  }
  return out;
}

void Watchdog::loop() {
  // The wait may last timeout_s minus the time the peers' heartbeats are sampled, so the
  // rank is gone within runtime.peer_timeout_s of the moment it started waiting (for
  // timeouts of 3 s and more; below, within half the timeout plus the 1.2 s sample).
  const double limit = std::max(opt_.timeout_s * 0.5, opt_.timeout_s - kSampleS - 0.3);
  auto last_beat = Clock::now() - std::chrono::seconds(10);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, kTick);
    if (stop_) break;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_beat).count() >= kBeatPeriodS) {
      // The file write happens unlocked: a slow filesystem must never hold up the main
      // thread's next collective (which takes the lock to arm a Scope).
      lock.unlock();
      beat(false);
      lock.lock();
      last_beat = now;
    }
    if (!armed_) continue;
    const double waited = std::chrono::duration<double>(now - since_).count();
    if (waited < limit) continue;
    std::string what = std::string(what_ ? what_ : "a wait on peers") +
                       (group_ ? " on the " + *group_ : std::string());
    std::vector<int> peers;
    if (peer_ >= 0) peers.push_back(peer_);
    else if (peers_) for (int r : *peers_) if (r != opt_.rank) peers.push_back(r);
    lock.unlock();
    fire(what, waited, peers);
    return;
  }
}

void Watchdog::fire(const std::string& what, double waited_s, const std::vector<int>& peers) {
  std::string ranks;
  for (int r : peers) {
    if (!ranks.empty()) ranks += ",";
    ranks += std::to_string(r);
  }
  std::string verdict;
  beat(true);  // peers sampling now see this rank as alive (timed out, not the cause)
  if (!beat_dir_.empty() && !peers.empty()) {
    const std::vector<int64_t> a = read_beats(peers);
    std::this_thread::sleep_for(std::chrono::duration<double>(kSampleS));
    const std::vector<int64_t> b = read_beats(peers);
    std::string gone;
    for (size_t i = 0; i < peers.size(); ++i) {
      if (a[i] == b[i] && b[i] != kTimedOut) {
        if (!gone.empty()) gone += ", ";
        gone += "rank " + std::to_string(peers[i]);
      }
    }
    verdict = gone.empty()
                  ? "; every peer's heartbeat still moves (a peer is alive but stuck, or the "
                    "network between us failed)"
                  : "; not answering: " + gone + " (heartbeat stopped)";
  }
  char head[160];
  std::snprintf(head, sizeof head, "rank %d on %s: no progress for %.1f s in ", opt_.rank,
                opt_.host.c_str(), waited_s);
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
