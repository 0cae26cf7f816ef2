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

// The contract, with T = runtime.peer_timeout_s:
//
// 1. No rank gives up on a peer that answers within T. A wait ends the rank only once it has
//    lasted T, measured from the moment the wait began (a receive, a collective, one phase of
//    a checkpoint save); a peer that is slow, or stopped for a while and then resumes, is
//    waited for as long as its answer comes before T.
// 2. Every survivor exits with code 5 within T + kMarginS (1 s) of the moment its neighbours
//    began waiting on the silent peer. The margin is made of:
//      - the poll interval (kTickS, 0.1 s): the thread checks the current wait's age 10 times
//        a second, so the rank that waits on the silent peer gives up at most 0.1 s after T;
//        its verdict on who is silent was sampled during the wait (the peers' heartbeats at
//        T - 1.2 s and at T), so no time is spent on it after T;
//      - the spread of the news (kCheckS + kTickS, 0.35 s a hop): a rank that gives up marks
//        its heartbeat "timed-out" before it exits. A rank whose wait has lasted kCheckS reads
//        the heartbeats of the peers it waits for every kCheckS, and one that finds a peer
//        marked so (that peer will never answer again) gives up at once, marking its own, so
//        a rank that waits on a rank that waits on the silent one follows within 0.35 s
//        instead of waiting out its own T; two such hops fit in the margin;
//      - the report (one log line) and the exit: milliseconds.
//    Ranks that wait on the silent peer directly give up after T whatever the others do. A
//    rank that is computing, not waiting, follows once it next waits (within kCheckS + kTickS
//    of the start of that wait).
//
// Which peer is silent is found through heartbeats: every rank's watchdog thread rewrites
// heartbeat_dir/rank_NNNNN twice a second (a counter, its state, the job's token, its host and
// pid). A peer whose counter did not move during the last 1.2 s of the wait is named as not
// answering; a peer marked "timed-out" is alive and a victim, not the cause. Lines with
// another job's token (a file left by an earlier run of the same run.dir) count as no beat at
// all, so an earlier job's "timed-out" never ends this one. (heartbeat_dir is on the run
// directory, which every rank of a job shares; without it the report names the operation and
// its group only, and only rule 1 and the poll interval apply.)
class Watchdog {
 public:
  static constexpr double kTickS = 0.1;     // the poll interval
  static constexpr double kCheckS = 0.25;   // heartbeat reads of a long wait, and their interval
  static constexpr double kSampleS = 1.2;   // a peer whose counter stays put this long is gone
  static constexpr double kMarginS = 1.0;   // survivors are gone within T + kMarginS
  static constexpr double kBeatPeriodS = 0.5;

  struct Options {
    double timeout_s = 60.0;  // runtime.peer_timeout_s
    int rank = 0;             // world rank and size, this host (for the report)
    int world_size = 1;
    std::string host;
    // Where the report goes (the run's log) instead of stderr; called from the watchdog thread.
    std::function<void(const std::string&)> report;
    // Test hook: called instead of std::_Exit(5) when the watchdog fires.
    std::function<void(int code)> exit;
    // The thread whose waits this watchdog bounds, named in its report and in the name of its
    // own thread ("" the main one; "nupipe-ckpt": checkpoint.async's background save, which
    // has a watchdog of its own without heartbeats, so rules 1 and the poll interval apply).
    std::string thread;
  };

  explicit Watchdog(Options options);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts the heartbeat file (once; later calls are ignored); the directory is created if
  // missing and the first beat written before it returns. Every rank calls it with the same
  // `job`, a token unique to this launch (rank 0's job_token(), broadcast); an empty one turns
  // off rule 2's spreading (no "timed-out" mark can be told from an earlier job's).
  void set_heartbeat_dir(const std::string& dir, const std::string& job = {});
  double timeout_s() const { return opt_.timeout_s; }

  // A token for set_heartbeat_dir: host, pid and the time, unique to this launch.
  static std::string job_token(const std::string& host);

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
  // What the thread knows of the current wait (watchdog thread only).
  struct WaitState {
    uint64_t generation = ~uint64_t{0};
    std::vector<int> peers;             // world ranks waited for, this rank excluded
    std::vector<int64_t> sample;        // their counters at T - kSampleS (empty: not yet)
    Clock::time_point sample_at{};
    Clock::time_point last_check{};
    size_t next_check = 0;              // rotation through large groups
  };
  void loop();
  void beat(bool timed_out);
  void fire(const std::string& what, double waited_s, const std::vector<int>& peers,
            const std::string& verdict);
  std::string silent_verdict(const WaitState& w) const;
  std::vector<int64_t> read_beats(const std::vector<int>& ranks) const;

  Options opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  // The current wait (guarded by mu_).
  bool armed_ = false;
  uint64_t generation_ = 0;  // changes whenever the current wait does
  Clock::time_point since_;
  const char* what_ = nullptr;
  const std::string* group_ = nullptr;
  const std::vector<int>* peers_ = nullptr;
  int peer_ = -1;
  // Heartbeat (set once under mu_, then used by the watchdog thread only).
  std::string beat_dir_;
  std::string job_;
  int beat_fd_ = -1;
  bool beat_failed_ = false;  // watchdog thread only
  int64_t beats_ = 0;
  std::thread thread_;
};

}  // namespace nupipe::parallel
