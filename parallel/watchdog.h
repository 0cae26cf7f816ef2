// watchdog.h: bounded failure. A thread that notices when this rank has waited on its peers
// (a collective, a receive, a checkpoint write) longer than runtime.peer_timeout_s, names the
// peer that stopped answering, and ends the process with exit code 5, whatever the launcher
// does: a dead or frozen rank never leaves the others hanging.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nupipe::parallel {

// Which peer the waiting rank may be waiting for is found through heartbeats: every rank's
// watchdog thread rewrites heartbeat_dir/rank_NNNNN twice a second (a counter, its host and
// pid). When a wait times out, the peers whose counter no longer moves are the ones named.
// (heartbeat_dir is on the run directory, which every rank of a job shares; without it the
// report names the operation and its group only.)
class Watchdog {
 public:
  struct Options {
    double timeout_s = 60.0;  // runtime.peer_timeout_s
    int rank = 0;             // world rank and size, this host (for the report)
    int world_size = 1;
    std::string host;
    // Where the report goes (the run's log) instead of stderr; called from the watchdog thread.
    std::function<void(const std::string&)> report;
    // Test hook: called instead of std::_Exit(5) when the watchdog fires.
    std::function<void(int code)> exit;
  };

  explicit Watchdog(Options options);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts the heartbeat file (once; later calls are ignored); created if missing. Every rank
  // calls it.
  void set_heartbeat_dir(const std::string& dir);
  double timeout_s() const { return opt_.timeout_s; }

  // A wait on peers, from construction to destruction. `what` and `group` must outlive it
  // (string literals and the communicator's name). `peers`: the world ranks it waits for.
  // Scopes nest: the inner one's clock runs while it lives, the outer's restarts after it.
  class Scope {
   public:
    Scope(Watchdog* wd, const char* what, const std::string* group,
          const std::vector<int>* peers, int peer = -1);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog* wd_;
    struct Saved {
      bool armed;
      const char* what;
      const std::string* group;
      const std::vector<int>* peers;
      int peer;
    } saved_{};
  };

 private:
  using Clock = std::chrono::steady_clock;
  void loop();
  void beat(bool timed_out);
  void fire(const std::string& what, double waited_s, const std::vector<int>& peers);
  std::vector<int64_t> read_beats(const std::vector<int>& ranks) const;

  Options opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  // The current wait (guarded by mu_).
  bool armed_ = false;
  Clock::time_point since_;
  const char* what_ = nullptr;
  const std::string* group_ = nullptr;
  const std::vector<int>* peers_ = nullptr;
  int peer_ = -1;
  // Heartbeat (watchdog thread only, after set under mu_).
  std::string beat_dir_;
  int beat_fd_ = -1;          // set once under mu_, then written by the watchdog thread only
  bool beat_failed_ = false;  // watchdog thread only
  int64_t beats_ = 0;
  std::thread thread_;
};

}  // namespace nupipe::parallel
