// test_watchdog.cpp: the watchdog's contract on one process, with its exit hook: a wait shorter
// than the timeout never fires, a longer one fires at the timeout (not before, and within the
// stated margin), the silent peer is named from the heartbeats, a peer that gave up ends the
// wait early, and an earlier job's heartbeat files never do.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "parallel/session/watchdog.h"

namespace fs = std::filesystem;
using nupipe::parallel::Watchdog;
using Clock = std::chrono::steady_clock;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("nupipe_wd_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A watchdog whose exit is recorded instead of ending the test.
struct Probe {
  std::atomic<bool> fired{false};
  std::atomic<int> code{0};
  std::atomic<int64_t> fired_ns{0};
  std::mutex mu;
  std::string report;

  Watchdog::Options options(double timeout_s, int rank = 0, int world = 3) {
    Watchdog::Options o;
    o.timeout_s = timeout_s;
    o.rank = rank;
    o.world_size = world;
    o.host = "testhost";
    o.report = [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mu);
      report = m;
    };
    o.exit = [this](int c) {
      fired_ns = Clock::now().time_since_epoch().count();
      code = c;
      fired = true;
    };
    return o;
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu);
    return report;
  }
  // Seconds from t0 to the firing, waiting up to `limit_s` for it; -1 if it did not fire.
  double fired_after(Clock::time_point t0, double limit_s) {
    const auto until = t0 + std::chrono::duration<double>(limit_s);
    while (!fired && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!fired) return -1.0;
    return std::chrono::duration<double>(Clock::time_point(Clock::duration(fired_ns.load())) - t0)
        .count();
  }
};

// A peer's heartbeat file as a live watchdog writes it.
void write_beat(const fs::path& dir, int rank, long long counter, const std::string& state,
                const std::string& job) {
  char name[32];
  std::snprintf(name, sizeof name, "rank_%05d", rank);
  std::ofstream f(dir / name, std::ios::trunc);
  char line[256];
  std::snprintf(line, sizeof line, "%020lld %-9s %s otherhost 4242\n", counter, state.c_str(),
                job.c_str());
  f << line;
}

const std::vector<int> kPeers{0, 1, 2};
const std::string kGroup = "test group";

}  // namespace

TEST(Watchdog, WaitsShorterThanTheTimeoutNeverFire) {
  Probe p;
  Watchdog wd(p.options(1.0));
  // 0.7 T, three times in a row (3 x 0.7 T in all: each wait has its own clock), and nested.
  for (int i = 0; i < 3; ++i) {
    Watchdog::Scope s(&wd, "receive", &kGroup, nullptr, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
  }
  {
    Watchdog::Scope outer(&wd, "checkpoint write", &kGroup, &kPeers);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    Watchdog::Scope inner(&wd, "barrier", &kGroup, &kPeers);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // unarmed: nothing to time
  EXPECT_FALSE(p.fired) << p.text();
}

TEST(Watchdog, FiresAtTheTimeoutWithinTheMargin) {
  for (double t : {1.0}) {  // T = 2 in NamesThePeerWhoseHeartbeatStopped
    Probe p;
    Watchdog wd(p.options(t));
    const auto t0 = Clock::now();
    Watchdog::Scope s(&wd, "all-reduce", &kGroup, &kPeers);
    const double after = p.fired_after(t0, t + 3.0);
    ASSERT_GE(after, 0.0) << "did not fire within T + 3 s, T = " << t;
    EXPECT_GE(after, t) << "gave up before runtime.peer_timeout_s";
    EXPECT_LE(after, t + Watchdog::kMarginS);
    EXPECT_EQ(p.code, 5);
    const std::string r = p.text();
    EXPECT_NE(r.find("rank 0 on testhost: no progress for"), std::string::npos) << r;
    EXPECT_NE(r.find("all-reduce on the test group (waiting for rank(s) 1,2)"),
              std::string::npos) << r;
    EXPECT_NE(r.find("exiting with code 5"), std::string::npos) << r;
    std::printf("T = %g s: fired %.3f s after the wait began (bound T + %.1f s)\n", t, after,
                Watchdog::kMarginS);
  }
}

TEST(Watchdog, NamesThePeerWhoseHeartbeatStopped) {
  TempDir d;
  Probe p;
  Watchdog wd(p.options(2.0));
  const std::string job = "job-a";
  wd.set_heartbeat_dir(d.path.string(), job);
  // Its own file: written at once, with the job's token, and rewritten twice a second.
  std::ifstream own0(d.path / "rank_00000");
  long long first = 0;
  std::string state, token;
  own0 >> first >> state >> token;
  EXPECT_EQ(first, 1);
  EXPECT_EQ(state, "ok");
  EXPECT_EQ(token, job);
  std::atomic<bool> done{false};
  write_beat(d.path, 1, 7, "ok", job);  // rank 1: frozen
  std::thread live([&] {                 // rank 2: alive (its own wait, say)
    for (long long c = 1; !done; ++c) {
      write_beat(d.path, 2, c, "ok", job);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  const auto t0 = Clock::now();
  {
    Watchdog::Scope s(&wd, "all-reduce", &kGroup, &kPeers);
    const double after = p.fired_after(t0, 5.0);
    EXPECT_GE(after, 2.0);
    EXPECT_LE(after, 2.0 + Watchdog::kMarginS);
  }
  done = true;
  live.join();
  const std::string r = p.text();
  EXPECT_NE(r.find("not answering: rank 1 (heartbeat stopped)"), std::string::npos) << r;
  EXPECT_EQ(r.find("rank 2"), std::string::npos) << r;
  // Its heartbeat now says it timed out (alive, a victim): peers do not blame it.
  std::ifstream own(d.path / "rank_00000");
  long long counter = 0;
  own >> counter >> state;
  EXPECT_GT(counter, 2);
  EXPECT_EQ(state, "timed-out");
}

TEST(Watchdog, APeerThatGaveUpEndsTheWaitEarly) {
  TempDir d;
  Probe p;
  Watchdog wd(p.options(5.0));
  wd.set_heartbeat_dir(d.path.string(), "job-b");
  write_beat(d.path, 1, 3, "ok", "job-b");
  write_beat(d.path, 2, 9, "timed-out", "job-b");
  const auto t0 = Clock::now();
  Watchdog::Scope s(&wd, "receive", &kGroup, nullptr, 2);
  const double after = p.fired_after(t0, 7.0);
  ASSERT_GE(after, 0.0);
  // Not the 5 s timeout: one heartbeat check after the wait has lasted kCheckS.
  EXPECT_LE(after, Watchdog::kCheckS * 2 + Watchdog::kTickS * 2);
  EXPECT_EQ(p.code, 5);
  const std::string r = p.text();
  EXPECT_NE(r.find("rank 2 gave up waiting on its own peers"), std::string::npos) << r;
}

TEST(Watchdog, AnEarlierJobsHeartbeatsNeverEndThisOne) {
  TempDir d;
  Probe p;
  Watchdog wd(p.options(2.0));
  // rank 2's file is left from an earlier launch whose rank 2 timed out.
  write_beat(d.path, 2, 99, "timed-out", "job-old");
  wd.set_heartbeat_dir(d.path.string(), "job-new");
  {
    Watchdog::Scope s(&wd, "receive", &kGroup, nullptr, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  EXPECT_FALSE(p.fired) << p.text();
  // And with no job token at all, no mark is trusted either.
  Probe q;
  TempDir e;
  Watchdog untokened(q.options(2.0));
  write_beat(e.path, 2, 5, "timed-out", "-");
  untokened.set_heartbeat_dir(e.path.string());
  {
    Watchdog::Scope s(&untokened, "receive", &kGroup, nullptr, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  EXPECT_FALSE(q.fired) << q.text();
}
