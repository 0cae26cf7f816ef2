// test_cli_outcome.cpp: run.dir/outcome.json on one process's exit paths (finished, a
// non-finite loss, a missing checkpoint, a refused config), and run.dir's lock: held by a live
// process, left by a dead one, and a record from another host whose heartbeat still moves.
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

nlohmann::json outcome_of(const std::string& run_dir) {
  return nlohmann::json::parse(read_file(run_dir + "/outcome.json"));
}

std::string last_line(const std::string& path) {
  const auto lines = read_lines(path);
  return lines.empty() ? std::string() : lines.back();
}

std::string host_name() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// The record a holder writes into run.dir/run.lock.
std::string lock_record(const std::string& host, int pid) {
  return nlohmann::json{{"host", host},     {"pid", pid},   {"since", "2026-01-01T00:00:00Z"},
                        {"since_unix", 1.0}, {"ranks", 4}, {"id", host + ":1:1"}}
      .dump();
}

const std::vector<std::string> kShort = {"train.steps=6", "checkpoint.every=3", "data.val=",
                                         "runtime.threads=1", "run.log_every=1"};

std::vector<std::string> with(std::vector<std::string> sets, const std::string& run_dir) {
  sets.push_back("run.dir=" + run_dir);
  return sets;
}

TEST(CliOutcome, FinishedRunRecordsItsStepCheckpointAndLastLine) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  const ProcessResult r = run_train(tiny_config(), with(kShort, run), tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  const nlohmann::json o = outcome_of(run);
  EXPECT_EQ(o["status"], "finished");
  EXPECT_EQ(o["exit_code"], 0);
  EXPECT_EQ(o["step"], 6);
  EXPECT_EQ(o["steps"], 6);
  EXPECT_EQ(o["checkpoint"], run + "/checkpoints/step_00000006");
  EXPECT_EQ(o["checkpoint_step"], 6);
  EXPECT_TRUE(o["failed_rank"].is_null());
  EXPECT_EQ(o["reported_by"], 0);
  EXPECT_EQ(o["ranks"], 1);
  EXPECT_LE(o["started_at"].get<std::string>(), o["ended_at"].get<std::string>());
  const std::string line = last_line(run + "/train.log");
  EXPECT_NE(line.find("outcome: finished (exit 0) at step 6 of 6; last checkpoint " + run +
                      "/checkpoints/step_00000006; recorded in " + run + "/outcome.json"),
            std::string::npos)
      << line;
  EXPECT_FALSE(fs::exists(run + "/run.lock")) << "the lock is released at the end";
  EXPECT_FALSE(fs::exists(run + "/outcome.json.tmp.0"));
}

TEST(CliOutcome, NonFiniteLossRecordsExit6AtTheLastGoodStep) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  auto sets = with(kShort, run);
  for (const char* s : {"optim.lr=1e6", "optim.grad_clip=0", "optim.warmup_steps=0",
                        "train.steps=50", "checkpoint.every=1"}) {
    sets.push_back(s);
  }
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
  ASSERT_EQ(r.exit_code, 6) << r;
  const nlohmann::json o = outcome_of(run);
  EXPECT_EQ(o["status"], "failed");
  EXPECT_EQ(o["exit_code"], 6);
  EXPECT_EQ(o["failed_rank"], 0);
  EXPECT_NE(o["reason"].get<std::string>().find("loss is"), std::string::npos) << o.dump(2);
  EXPECT_FALSE(o["hint"].get<std::string>().empty());
  // The step reached is the last one completed, whose checkpoint is the last committed.
  EXPECT_GE(o["step"].get<int>(), 1);
  EXPECT_EQ(o["checkpoint_step"], o["step"]) << o.dump(2);
  const std::string line = last_line(run + "/train.log");
  EXPECT_NE(line.find("outcome: failed (exit 6) at step " + std::to_string(o["step"].get<int>())),
            std::string::npos)
      << line;
  EXPECT_FALSE(fs::exists(run + "/run.lock"));
}

TEST(CliOutcome, MissingCheckpointRecordsExit4) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  auto sets = with(kShort, run);
  sets.push_back("checkpoint.resume=" + tmp.file("nowhere/step_00000003"));
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
  ASSERT_EQ(r.exit_code, 4) << r;
  const nlohmann::json o = outcome_of(run);
  EXPECT_EQ(o["status"], "failed");
  EXPECT_EQ(o["exit_code"], 4);
  EXPECT_EQ(o["step"], 0);
  EXPECT_TRUE(o["checkpoint"].is_null());
  EXPECT_FALSE(fs::exists(run + "/run.lock"));
  EXPECT_FALSE(fs::exists(run + "/metrics.jsonl")) << list_dir(run);
}

TEST(CliOutcome, RefusedConfigWritesNothing) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  auto sets = with(kShort, run);
  sets.push_back("train.steps=-1");
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
  ASSERT_EQ(r.exit_code, 2) << r;
  EXPECT_FALSE(fs::exists(run)) << list_dir(run);
}

// The test process holds the lock as a live run would: the launch exits 2 naming it and
// changes nothing.
TEST(CliOutcome, LiveHolderRefusesTheLaunch) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  fs::create_directories(run);
  write_file(run + "/metrics.jsonl", "{\"step\": 1, \"loss\": 5.0}\n");
  const std::string record = lock_record(host_name(), static_cast<int>(::getpid()));
  write_file(run + "/run.lock", record);
  const int fd = ::open((run + "/run.lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const ProcessResult r = run_train(tiny_config(), with(kShort, run), tmp.path());
  ::close(fd);
  ASSERT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("run.dir " + run + " is in use by a live run: rank 0 on host " +
                          host_name() + ", pid " + std::to_string(::getpid()) +
                          ", since 2026-01-01T00:00:00Z (4 ranks)"),
            std::string::npos)
      << r;
  EXPECT_NE(r.output.find("HINT: use another run.dir"), std::string::npos) << r;
  EXPECT_EQ(read_file(run + "/metrics.jsonl"), "{\"step\": 1, \"loss\": 5.0}\n");
  EXPECT_EQ(read_file(run + "/run.lock"), record);
  EXPECT_FALSE(fs::exists(run + "/metrics.jsonl.1"));
  EXPECT_FALSE(fs::exists(run + "/outcome.json"));
  EXPECT_FALSE(fs::exists(run + "/train.log"));
}

// A record without a lock on this host, of a pid that no longer exists: taken over.
TEST(CliOutcome, DeadHoldersLockIsTakenOver) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  fs::create_directories(run);
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);  // a pid that was, and is gone
  write_file(run + "/run.lock", lock_record(host_name(), static_cast<int>(child)));
  const ProcessResult r = run_train(tiny_config(), with(kShort, run), tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  const std::string want = "run.dir lock: taken over from rank 0 on host " + host_name() +
                           ", pid " + std::to_string(child) +
                           ", since 2026-01-01T00:00:00Z (4 ranks): that process is gone";
  EXPECT_NE(r.output.find(want), std::string::npos) << r;
  EXPECT_NE(read_file(run + "/train.log").find(want), std::string::npos);
  EXPECT_EQ(outcome_of(run)["status"], "finished");
}

// A record of another host, unlocked: its heartbeat decides whether the holder is alive (the
// filesystem's locks may not reach across hosts).
void other_host_record(bool beating) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  fs::create_directories(run + "/heartbeat");
  const std::string record = lock_record("node-elsewhere", 4242);
  write_file(run + "/run.lock", record);
  const std::string beat = run + "/heartbeat/rank_00000";
  write_file(beat, "00000000000000000001 ok        - node-elsewhere 4242\n");
  std::atomic<bool> stop{false};
  std::thread beater([&] {
    for (long n = 2; beating && !stop; ++n) {
      char line[96];
      std::snprintf(line, sizeof line, "%020ld ok        - node-elsewhere 4242\n", n);
      // In place at offset 0, as the watchdog writes it (a truncating rewrite can be read
      // empty in between).
      const int fd = ::open(beat.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        (void)!::pwrite(fd, line, std::strlen(line), 0);
        ::close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const ProcessResult r = run_train(tiny_config(), with(kShort, run), tmp.path());
  stop = true;
  beater.join();
  if (beating) {
    ASSERT_EQ(r.exit_code, 2) << r;
    EXPECT_NE(r.output.find("is in use by a live run: rank 0 on host node-elsewhere, pid 4242"),
              std::string::npos)
        << r;
    EXPECT_NE(r.output.find("locks do not reach across hosts"), std::string::npos) << r;
    EXPECT_EQ(read_file(run + "/run.lock"), record);
    EXPECT_FALSE(fs::exists(run + "/config.toml"));
  } else {
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_NE(r.output.find("taken over from rank 0 on host node-elsewhere, pid 4242, since "
                            "2026-01-01T00:00:00Z (4 ranks): its lock was released and its "
                            "heartbeat has stopped"),
              std::string::npos)
        << r;
  }
}

TEST(CliOutcome, OtherHostsRecordWithAMovingHeartbeatRefuses) { other_host_record(true); }
TEST(CliOutcome, OtherHostsRecordWithAStoppedHeartbeatIsTakenOver) { other_host_record(false); }

}  // namespace
}  // namespace nupipe::cli_test
