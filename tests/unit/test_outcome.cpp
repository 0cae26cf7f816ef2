// test_outcome.cpp: what the outcome record reads out of failure messages (the rank that
// failed first) and the run.dir lock record's round trip.
#include <gtest/gtest.h>

#include "launcher/outcome.h"
#include "launcher/run_lock.h"

namespace nupipe::launcher {
namespace {

TEST(Outcome, FailedRankFromTheConsensusVerdict) {
  EXPECT_EQ(failed_rank_in("rank 2 failed (its message is printed above)"), 2);
  EXPECT_EQ(failed_rank_in("rank 117 failed (its message is printed above)"), 117);
}

TEST(Outcome, FailedRankFromTheWatchdogsReport) {
  EXPECT_EQ(failed_rank_in("rank 0 on node3: no progress for 4.1 s in receive on the pipeline "
                           "group of replica 0 (waiting for rank(s) 1, 3); not answering: rank "
                           "3, rank 1 (heartbeat stopped); runtime.peer_timeout_s = 4"),
            3);
}

TEST(Outcome, NoRankWhenTheMessageNamesNone) {
  // A rank's own message that starts with its rank is not a verdict on another rank.
  EXPECT_EQ(failed_rank_in("rank 4 on node3: no progress for 60.0 s in all-reduce; every peer's "
                           "heartbeat still moves"),
            -1);
  EXPECT_EQ(failed_rank_in("the loss is nan at step 3"), -1);
  EXPECT_EQ(failed_rank_in("rank failed"), -1);
}

TEST(RunLockRecord, RoundTripsAndRefusesOtherText) {
  LockRecord r;
  r.host = "node3";
  r.pid = 4673;
  r.since = "2026-12-02T06:13:38Z";
  r.since_unix = 1796192018.7;
  r.ranks = 4;
  r.id = "node3:4673:1796192018700000000";
  LockRecord back;
  ASSERT_TRUE(parse_lock_record(lock_record_json(r), &back));
  EXPECT_EQ(back.host, r.host);
  EXPECT_EQ(back.pid, r.pid);
  EXPECT_EQ(back.since, r.since);
  EXPECT_EQ(back.ranks, r.ranks);
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.describe(), "rank 0 on host node3, pid 4673, since 2026-12-02T06:13:38Z (4 ranks)");
  EXPECT_FALSE(parse_lock_record("", &back));
  EXPECT_FALSE(parse_lock_record("{\"host\": \"a\"", &back));
  EXPECT_FALSE(parse_lock_record("{\"host\": \"a\", \"pid\": \"x\"}", &back));
}

}  // namespace
}  // namespace nupipe::launcher
