// test_async_save.cpp: checkpoint.async's background save (launcher/async_save.h): the
// snapshot runs on its thread first, the caller's wait_snapshot() returns only once it is
// taken (what holds the optimizer's update), and a snapshot that fails ends the save there.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "launcher/async_save.h"

namespace nupipe::launcher {
namespace {

parallel::Watchdog::Options quiet() {
  parallel::Watchdog::Options o;
  o.timeout_s = 30.0;
  o.report = [](const std::string&) {};
  return o;
}

TEST(AsyncSave, WaitSnapshotReturnsOnlyOnceTheSnapshotIsTaken) {
  AsyncSave save(quiet());
  std::atomic<bool> copied{false}, written{false};
  save.start(
      4,
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        copied.store(true);
      },
      [&](parallel::MpiCommunicator&) {
        EXPECT_TRUE(copied.load()) << "the job ran before the snapshot was taken";
        written.store(true);
      });
  const double waited = save.wait_snapshot();
  EXPECT_TRUE(copied.load()) << "wait_snapshot returned before the snapshot was taken";
  EXPECT_GT(waited, 0.1);
  EXPECT_EQ(save.wait_snapshot(), 0.0) << "taken already: nothing to wait for";
  save.join();
  EXPECT_TRUE(written.load());
  EXPECT_FALSE(save.error().has_value());
  EXPECT_GE(save.snapshot_seconds(), 0.19);
  EXPECT_GE(save.job_seconds(), save.snapshot_seconds());
}

TEST(AsyncSave, ASnapshotThatFailsReleasesTheWaitAndEndsTheSave) {
  AsyncSave save(quiet());
  std::atomic<bool> written{false};
  save.start(
      8, [] { throw Error(ExitCode::checkpoint, "snapshot: no memory"); },
      [&](parallel::MpiCommunicator&) { written.store(true); });
  save.wait_snapshot();  // returns: the snapshot ended, by failing
  save.join();
  EXPECT_FALSE(written.load()) << "a save whose snapshot failed must not write";
  ASSERT_TRUE(save.error().has_value());
  EXPECT_EQ(save.error()->code(), ExitCode::checkpoint);
  EXPECT_EQ(save.wait_snapshot(), 0.0);
}

}  // namespace
}  // namespace nupipe::launcher
