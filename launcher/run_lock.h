// run_lock.h: the exclusive lock a live run holds on its run.dir (run.dir/run.lock: an flock
// plus a record of who holds it), so that a second launch into the same directory is refused.
#pragma once

#include <string>
#include <vector>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/session/world.h"

namespace nupipe::launcher {

// Who holds (or last held) a run.dir: rank 0's host and pid, when it took the lock.
struct LockRecord {
  std::string host;
  int pid = 0;
  std::string since;       // UTC, "2026-12-02T05:50:00Z"
  double since_unix = 0.0;
  int ranks = 0;           // the holder's world size
  std::string id;          // host:pid:since_unix_ns, unique to one holding
  std::string describe() const;  // "rank 0 on host H, pid P, since T (N ranks)"
};

// Collective over `comm` (every rank calls it; every rank gets the same verdict):
//  - rank 0 creates run.dir if needed and takes flock(LOCK_EX) on run.dir/run.lock, without
//    waiting. Held by a live run: usage_error (2) naming the holder, before anything in
//    run.dir is renamed or written.
//  - a record left by a holder that is gone (the lock file unlocked: it was killed or crashed)
//    is taken over, and notes() says whose it was. When that holder ran on another host and
//    its heartbeat (run.dir/heartbeat/rank_00000) still moves, the filesystem's locks do not
//    reach across hosts: refused (2), nothing taken over.
//  - every other rank reads the record back and checks it is the one rank 0 wrote (run.dir is
//    one directory every rank shares), else usage_error (2).
// The lock is released when the object goes (clean exits and errors alike: the record is
// removed, and run.dir too when this run created it and left nothing in it); a process that
// dies without unwinding leaves the record, and the kernel releases the flock.
class RunLock {
 public:
  RunLock(const std::string& run_dir, const parallel::World& world,
          parallel::MpiCommunicator& comm);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const LockRecord& record() const { return record_; }  // this run's (every rank)
  const std::vector<std::string>& notes() const { return notes_; }  // for the run's log
  std::string path() const { return dir_ + "/run.lock"; }
  const std::string& dir() const { return dir_; }

 private:
  void check_all_ranks(const parallel::World& world, parallel::MpiCommunicator& comm);
  void acquire(const parallel::World& world);  // rank 0
  void release();
  std::string dir_;
  int fd_ = -1;  // rank 0 only
  bool created_dir_ = false;
  LockRecord record_;
  std::vector<std::string> notes_;
};

// The record as JSON text, and back (false when `text` is not a record).
std::string lock_record_json(const LockRecord& r);
bool parse_lock_record(const std::string& text, LockRecord* r);

}  // namespace nupipe::launcher
