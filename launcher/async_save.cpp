// async_save.cpp: the background save's thread, its communicator and watchdog, and the
// step-boundary agreement on whether it has ended.
#include "launcher/async_save.h"

#include <pthread.h>

#include <chrono>
#include <exception>
#include <vector>

#include "runtime/elapsed.h"

namespace nupipe::launcher {

using runtime::seconds_since;

namespace {
parallel::Watchdog::Options own(parallel::Watchdog::Options o) {
  o.thread = AsyncSave::kThreadName;
  return o;
}
}  // namespace

AsyncSave::AsyncSave(parallel::Watchdog::Options watchdog)
    : watchdog_(own(std::move(watchdog))), comm_(std::make_unique<parallel::MpiCommunicator>()) {
  comm_->set_watchdog(&watchdog_, std::string("checkpoint writer (thread ") + kThreadName + ")");
}

AsyncSave::~AsyncSave() {
  if (thread_.joinable()) thread_.join();
}

void AsyncSave::start(int64_t step, std::function<void()> snapshot, Job job) {
  if (thread_.joinable()) throw Error(ExitCode::internal, "AsyncSave::start: a save is in flight");
  step_ = step;
  error_.reset();
  done_.store(false, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_taking_ = true;
  }
  thread_ = std::thread([this, snapshot = std::move(snapshot), job = std::move(job)] {
    const auto t0 = std::chrono::steady_clock::now();
    auto snapshot_taken = [&] {
      {
        std::lock_guard<std::mutex> lock(snapshot_mu_);
        snapshot_s_ = seconds_since(t0);
        snapshot_taking_ = false;
      }
      snapshot_cv_.notify_all();
    };
    try {
      try {
        snapshot();
      } catch (...) {
        snapshot_taken();
        throw;
      }
      snapshot_taken();
      job(*comm_);
    } catch (const Error& e) {
      error_ = e;
    } catch (const std::exception& e) {
      error_ = Error(ExitCode::internal, std::string("background checkpoint save: ") + e.what(),
                     "this is a bug in nupipe; please report it with the config");
    }
    job_s_ = seconds_since(t0);
    done_.store(true, std::memory_order_release);
  });
  pthread_setname_np(thread_.native_handle(), kThreadName);
}

double AsyncSave::wait_snapshot() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(snapshot_mu_);
  if (!snapshot_taking_) return 0.0;
  snapshot_cv_.wait(lock, [&] { return !snapshot_taking_; });
  return seconds_since(t0);
}

bool AsyncSave::all_done(parallel::Communicator& world) {
  std::vector<double> done(1, done_.load(std::memory_order_acquire) ? 1.0 : 0.0);
  world.all_reduce_sum(done.data(), 1);
  return done[0] == static_cast<double>(world.size());
}

double AsyncSave::join() {
  const auto t0 = std::chrono::steady_clock::now();
  if (thread_.joinable()) thread_.join();
  return seconds_since(t0);
}

}  // namespace nupipe::launcher
