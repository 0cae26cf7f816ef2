// async_save.h: checkpoint.async's background save: one named thread that writes, checksums,
// commits, verifies and prunes a checkpoint while training goes on, over its own communicator.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/session/watchdog.h"
#include "runtime/error.h"

namespace nupipe::launcher {

// At most one save in flight. Its MPI calls (parallel HDF5's and the checkpoint's
// agreements) go over a duplicate of MPI_COMM_WORLD of its own, so they never match the
// training's messages, from its own thread (MPI_THREAD_MULTIPLE), and each of their waits is
// bounded by a watchdog of its own (the main one bounds one wait at a time: the training's).
// The training thread learns that a save has ended only through all_done(), an agreement of
// every rank at a step boundary, so every rank takes the verdict at the same step.
class AsyncSave {
 public:
  static constexpr const char* kThreadName = "nupipe-ckpt";
  using Job = std::function<void(parallel::MpiCommunicator& comm)>;

  // Collective over the world (the communicator's duplication). `watchdog`: the options of
  // the main watchdog (timeout, rank, report); its thread is named after this one's.
  explicit AsyncSave(parallel::Watchdog::Options watchdog);
  ~AsyncSave();  // waits for a save in flight
  AsyncSave(const AsyncSave&) = delete;
  AsyncSave& operator=(const AsyncSave&) = delete;

  bool pending() const { return thread_.joinable(); }
  int64_t step() const { return step_; }  // the step of the save in flight (or the last)

  // Runs snapshot(), then job(comm), on the background thread; no save may be in flight. A
  // nupipe::Error either throws is kept for join() (the job agrees on it with the other ranks
  // over comm); a snapshot that throws ends the save there. The training thread goes on while
  // the snapshot is taken, and calls wait_snapshot() before it next changes what the snapshot
  // copies (the optimizer's update).
  void start(int64_t step, std::function<void()> snapshot, Job job);
  // Returns once the snapshot of the save in flight has been taken (or failed): the seconds
  // the caller waited for it, 0 when none is being taken.
  double wait_snapshot();
  double snapshot_seconds() const { return snapshot_s_; }  // the last one's time on its thread
  // Collective over `world` (the training's communicator): whether the save in flight has
  // ended on every rank.
  bool all_done(parallel::Communicator& world);
  // Waits for the save in flight; returns the seconds waited. error() is then its failure.
  double join();
  const std::optional<Error>& error() const { return error_; }
  double job_seconds() const { return job_s_; }  // the last save's time on its thread

 private:
  parallel::Watchdog watchdog_;
  std::unique_ptr<parallel::MpiCommunicator> comm_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::mutex snapshot_mu_;
  std::condition_variable snapshot_cv_;
  bool snapshot_taking_ = false;  // under snapshot_mu_
  double snapshot_s_ = 0.0;       // written under snapshot_mu_ before snapshot_taking_ clears
  std::optional<Error> error_;
  int64_t step_ = -1;
  double job_s_ = 0.0;
};

}  // namespace nupipe::launcher
