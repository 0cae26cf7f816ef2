// nccl_communicator.cpp: NcclCommunicator: NCCL collectives and point-to-point on comm
// streams ordered after the compute stream with events, a ledger of pending operations polled
// for NCCL's async errors and the peer timeout (abort, then peer_error).
#include "parallel/comm/nccl_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/session/mpi_check.h"
#include "parallel/comm/nccl_check.h"
#include "runtime/check.h"
#include "runtime/elapsed.h"

namespace nupipe::parallel {

using runtime::seconds_since;
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMonitorTick = std::chrono::milliseconds(100);
constexpr const char* kPeerHint =
    "a peer failed or froze, or the network between the ranks failed: check the other ranks' "
    "logs (NCCL_DEBUG=WARN tells more), then relaunch the same command to resume from the last "
    "checkpoint (docs/sre-runbook.md)";

// Host polling: spin (yielding) for the first 200 us, then sleep up to 1 ms at a time.
void back_off(Clock::time_point started) {
  const double s = seconds_since(started);
  if (s < 200e-6) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(1e-3, s / 10)));
  }
}

ncclDataType_t nccl_type_of(runtime::DType t) {
  switch (t) {
    case runtime::DType::f32: return ncclFloat;
    case runtime::DType::bf16: return ncclBfloat16;
    case runtime::DType::i32: return ncclInt32;
  }
  return ncclFloat;
}

// NCCL on host memory fails deep inside a kernel; say what is wrong instead.
void require_device(const void* p, const char* what) {
  cudaPointerAttributes a{};
  NUPIPE_CUDA_CHECK(cudaPointerGetAttributes(&a, p));
  NUPIPE_CHECK(a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged,
               std::string(what) + " on host memory: the NCCL communicator takes device buffers; "
               "host scalars (loss, norms, agreement) go through the MPI control plane");
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

// The shared core's parts, named (not anonymous) because NcclCommunicator::Core holds them.
namespace nccl_core {

// One NCCL communicator with its stream. Lane 0 carries the collectives and the messages from
// lower to higher group ranks, lane 1 the messages from higher to lower ranks.
struct Lane {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on the compute stream, waited on by `stream`
};

// An operation enqueued and not yet seen complete.
struct Pending {
  uint64_t id;
  cudaEvent_t done;  // recorded on the lane's stream after the operation
  const char* what;  // "all-reduce", "send", ...
  int peer;          // group rank for point-to-point, -1 for a collective
  Clock::time_point since;
};

}  // namespace nccl_core

using nccl_core::Lane;
using nccl_core::Pending;

// Everything the communicator and its Requests share. Every NCCL call and every event
// operation happens under mu (the monitor thread polls concurrently with the caller's thread).
struct NcclCommunicator::Core {
  std::string group;
  std::vector<int> world_ranks;
  int rank = 0, size = 1, device = 0;
  double timeout_s = 60.0;
  cudaStream_t compute = nullptr;
  Watchdog* watchdog = nullptr;
  int lanes_used = 0;
  Lane lanes[2];

  std::mutex mu;
  std::condition_variable cv;
  std::vector<cudaEvent_t> free_events;
  std::vector<Pending> pending;
  uint64_t next_id = 1;
  bool failed = false, closed = false, stop = false;
  std::string failure;
  std::thread monitor;

  ~Core();
  std::string describe(const char* what, int peer) const;
  std::string poll_locked();
  void abort_locked(const std::string& why, bool caller_thread);
  [[noreturn]] void throw_failure_locked() const;
  void check_locked();
  void settle_locked(Lane& lane, const char* what, int peer);
  template <typename Fn>
  uint64_t post(int lane, const char* what, int peer, bool compute_waits, Fn&& enqueue);
  bool is_pending_locked(uint64_t id) const;
  void wait_for(uint64_t id);  // 0: everything pending
  void cancel(uint64_t id);
  void monitor_loop();
  void stop_monitor() {
    std::unique_lock<std::mutex> lock(mu);
    stop = true;
    lock.unlock();
    cv.notify_all();
    if (monitor.joinable()) monitor.join();
  }
  void close() noexcept;
};

namespace {

// A send or receive: completes when its event has (polled from the host, see Core::wait_for).
class NcclRequest final : public Request::Impl {
 public:
  NcclRequest(std::shared_ptr<NcclCommunicator::Core> core, uint64_t id)
      : core_(std::move(core)), id_(id) {}
  void wait() override { core_->wait_for(id_); }
  void cancel_and_wait() override { core_->cancel(id_); }

 private:
  std::shared_ptr<NcclCommunicator::Core> core_;
  uint64_t id_;
};

}  // namespace

// ---- Core -----------------------------------------------------------------------------------

std::string NcclCommunicator::Core::describe(const char* what, int peer) const {
  std::string s = std::string(what) + " on the " + group + " (NCCL; group rank " +
                  std::to_string(rank) + " of " + std::to_string(size) + ", world rank " +
                  std::to_string(world_ranks[static_cast<size_t>(rank)]);
  if (peer >= 0) {
    s += "; peer: group rank " + std::to_string(peer) + " = world rank " +
         std::to_string(world_ranks[static_cast<size_t>(peer)]);
  } else {
    std::string others;
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      if (!others.empty()) others += ",";
      others += std::to_string(world_ranks[static_cast<size_t>(r)]);
    }
    s += "; peers: world ranks " + others;
  }
  return s + ")";
}

// Retires the completed operations and looks for trouble: an NCCL async error, a CUDA error
// of an operation, an operation older than the timeout. Returns what went wrong, or "".
std::string NcclCommunicator::Core::poll_locked() {
  for (int l = 0; l < lanes_used; ++l) {
    if (lanes[l].comm == nullptr) continue;
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(lanes[l].comm, &async);
    if (rc != ncclSuccess) async = rc;
    if (async != ncclSuccess && async != ncclInProgress) {
      const Pending* first = pending.empty() ? nullptr : &pending.front();
      return describe(first ? first->what : "communication", first ? first->peer : -1) +
             " failed: NCCL reports " + nccl_error_string(async);
    }
  }
  for (size_t i = 0; i < pending.size();) {
    const cudaError_t e = cudaEventQuery(pending[i].done);
    if (e == cudaSuccess) {
      free_events.push_back(pending[i].done);
      pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if (e != cudaErrorNotReady) {
      return describe(pending[i].what, pending[i].peer) + " failed on the device: CUDA error " +
             cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    }
    ++i;
  }
  for (const Pending& p : pending) {
    const double waited = seconds_since(p.since);
    if (waited > timeout_s) {
      return describe(p.what, p.peer) + " did not complete in " + fmt_seconds(waited) +
             " s (runtime.peer_timeout_s = " + fmt_seconds(timeout_s) + ")";
    }
  }
  return {};
}

// Records the failure and aborts the NCCL communicators: their kernels end, so neither this
// rank's streams nor the compute stream waiting on them stay blocked. From the caller's thread
// the abort runs in a watchdog Scope, in case it hangs too.
void NcclCommunicator::Core::abort_locked(const std::string& why, bool caller_thread) {
  if (failed) return;
  failed = true;
  failure = why;
  Watchdog::Scope scope(caller_thread ? watchdog : nullptr, "NCCL abort", &group, &world_ranks);
  for (Lane& lane : lanes) {
    if (lane.comm != nullptr) ncclCommAbort(lane.comm);  // errors ignored: already failing
    lane.comm = nullptr;
  }
  for (const Pending& p : pending) free_events.push_back(p.done);  // destroyed with the Core
  pending.clear();
}

void NcclCommunicator::Core::throw_failure_locked() const {
  throw peer_error(failure + "; NCCL communicators aborted [" + where_am_i() + "]", kPeerHint);
}

// Throws if a failure was found before or is found now (after aborting).
void NcclCommunicator::Core::check_locked() {
  if (failed) throw_failure_locked();
  const std::string why = poll_locked();
  if (why.empty()) return;
  abort_locked(why, true);
  throw_failure_locked();
}

// A nonblocking communicator's call returned ncclInProgress: poll until it is set up.
void NcclCommunicator::Core::settle_locked(Lane& lane, const char* what, int peer) {
  const auto since = Clock::now();
  for (;;) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(lane.comm, &async);
    if (rc != ncclSuccess) async = rc;
    if (async == ncclSuccess) return;
    if (async != ncclInProgress) {
      abort_locked(describe(what, peer) + " failed: NCCL reports " + nccl_error_string(async),
                   true);
      throw_failure_locked();
    }
    if (seconds_since(since) > timeout_s) {
      abort_locked(describe(what, peer) + " was not set up within runtime.peer_timeout_s = " +
                       fmt_seconds(timeout_s) + " s (a peer did not join)",
                   true);
      throw_failure_locked();
    }
    back_off(since);
  }
}

// Enqueues one operation on a lane: after the compute stream's work so far, then its event;
// compute_waits makes the compute stream wait for it (collectives). enqueue(comm, stream)
// makes the NCCL call through NUPIPE_NCCL_NB and returns whether it is still in progress.
template <typename Fn>
uint64_t NcclCommunicator::Core::post(int lane_index, const char* what, int peer,
                                      bool compute_waits, Fn&& enqueue) {
  std::lock_guard<std::mutex> lock(mu);
  NUPIPE_CHECK(!closed, std::string(what) + " on the " + group + " after it was closed");
  check_locked();
  Lane& lane = lanes[lane_index];
  NUPIPE_CUDA_CHECK(cudaEventRecord(lane.ready, compute));
  NUPIPE_CUDA_CHECK(cudaStreamWaitEvent(lane.stream, lane.ready, 0));
  bool in_progress = false;
  try {
    in_progress = enqueue(lane.comm, lane.stream);
  } catch (const Error& e) {
    abort_locked(describe(what, peer) + ": " + e.what(), true);
    throw_failure_locked();
  }
  if (in_progress) settle_locked(lane, what, peer);
  cudaEvent_t done = nullptr;
  if (free_events.empty()) {
    NUPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  } else {
    done = free_events.back();
    free_events.pop_back();
  }
  pending.push_back({next_id, done, what, peer, Clock::now()});  // destroyed from here on
  NUPIPE_CUDA_CHECK(cudaEventRecord(done, lane.stream));
  if (compute_waits) NUPIPE_CUDA_CHECK(cudaStreamWaitEvent(compute, done, 0));
  return next_id++;
}

bool NcclCommunicator::Core::is_pending_locked(uint64_t id) const {
  for (const Pending& p : pending) {
    if (p.id == id) return true;
  }
  return false;
}

// Polls until operation id (every operation: id 0) has completed.
void NcclCommunicator::Core::wait_for(uint64_t id) {
  const auto since = Clock::now();
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    check_locked();  // retires what completed; throws on errors and timeouts
    if (id == 0 ? pending.empty() : !is_pending_locked(id)) return;
    lock.unlock();
    back_off(since);
    lock.lock();
  }
}

// Unwinding: NCCL cannot cancel one operation, so a pending one aborts the communicators (the
// rank is failing; its peers then fail too, with exit code 5) and nothing writes the buffer
// after its Request is gone. Never throws.
void NcclCommunicator::Core::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu);
  if (failed) return;
  const std::string why = poll_locked();
  if (!why.empty()) {
    abort_locked(why, true);
    return;
  }
  if (is_pending_locked(id)) {
    abort_locked("a pending send or receive on the " + group +
                     " was abandoned while this rank was failing",
                 true);
  }
}

// Finds failures nobody waits for (a collective the compute stream waits on while the host
// is blocked in the backend): aborting unblocks the device; the next call throws.
void NcclCommunicator::Core::monitor_loop() {
  cudaSetDevice(device);  // the events and communicators live on the caller's device
  std::unique_lock<std::mutex> lock(mu);
  while (!stop) {
    cv.wait_for(lock, kMonitorTick);
    if (stop || failed) continue;
    const std::string why = poll_locked();
    if (why.empty()) continue;
    abort_locked(why, false);
    std::fprintf(stderr, "nupipe: %s [%s]; NCCL communicators aborted\n", why.c_str(),
                 where_am_i().c_str());
    std::fflush(stderr);
  }
}

// The orderly end: pending work completes, the communicators are finalized and destroyed.
void NcclCommunicator::Core::close() noexcept {
  stop_monitor();
  try {
    wait_for(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nupipe: closing the %s: %s\n", group.c_str(), e.what());
  }
  std::lock_guard<std::mutex> lock(mu);
  closed = true;
  for (Lane& lane : lanes) {
    if (lane.comm == nullptr || failed) continue;
    try {
      if (NUPIPE_NCCL_NB(ncclCommFinalize(lane.comm))) settle_locked(lane, "finalize", -1);
      NUPIPE_NCCL(ncclCommDestroy(lane.comm));
      lane.comm = nullptr;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nupipe: closing the %s: %s\n", group.c_str(), e.what());
      abort_locked(e.what(), true);
    }
  }
}

// Last resort (a constructor that threw, or close() never ran): nothing graceful is left.
NcclCommunicator::Core::~Core() {
  stop_monitor();
  for (Lane& lane : lanes) {
    if (lane.comm != nullptr) ncclCommAbort(lane.comm);
    if (lane.ready != nullptr) cudaEventDestroy(lane.ready);
    if (lane.stream != nullptr) cudaStreamDestroy(lane.stream);  // released once idle
  }
  for (const Pending& p : pending) cudaEventDestroy(p.done);
  for (cudaEvent_t e : free_events) cudaEventDestroy(e);
}

// ---- NcclCommunicator -----------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(MpiCommunicator& group, int device, cudaStream_t compute,
                                   double timeout_s, bool point_to_point)
    : core_(std::make_shared<Core>()), group_(group), rank_(group.rank()), size_(group.size()) {
  Core& c = *core_;
  c.group = group.name();
  c.world_ranks = group.world_ranks();
  c.rank = rank_;
  c.size = size_;
  c.device = device;
  c.compute = compute;
  c.watchdog = group.watchdog();
  c.timeout_s = timeout_s > 0 ? timeout_s : (c.watchdog ? c.watchdog->timeout_s() : 60.0);
  NUPIPE_CHECK(device >= 0, "CUDA device index " + std::to_string(device));
  NUPIPE_CUDA_CHECK(cudaSetDevice(device));
  if (size_ == 1) return;  // every operation is a copy on the compute stream or nothing
  c.lanes_used = point_to_point ? 2 : 1;
  int least = 0, greatest = 0;  // communication first when it competes with compute
  NUPIPE_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  for (int l = 0; l < c.lanes_used; ++l) {
    NUPIPE_CUDA_CHECK(
        cudaStreamCreateWithPriority(&c.lanes[l].stream, cudaStreamNonBlocking, greatest));
    NUPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&c.lanes[l].ready, cudaEventDisableTiming));
  }
  // Rank 0's unique ids (one per lane) reach every rank over the host plane.
  std::string ids(static_cast<size_t>(c.lanes_used) * sizeof(ncclUniqueId), '\0');
  if (rank_ == 0) {
    for (int l = 0; l < c.lanes_used; ++l) {
      ncclUniqueId id;
      NUPIPE_NCCL(ncclGetUniqueId(&id));
      std::memcpy(ids.data() + l * sizeof id, &id, sizeof id);
    }
  }
  ids = group.broadcast_text(ids, 0);
  NUPIPE_CHECK(ids.size() == static_cast<size_t>(c.lanes_used) * sizeof(ncclUniqueId),
               "NCCL unique ids of " + std::to_string(ids.size()) + " bytes from rank 0");
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (int l = 0; l < c.lanes_used; ++l) {
      ncclUniqueId id;
      std::memcpy(&id, ids.data() + l * sizeof id, sizeof id);
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;  // no NCCL call may hang the host: we poll, with a deadline
      config.commName = c.group.c_str();
      if (NUPIPE_NCCL_NB(ncclCommInitRankConfig(&c.lanes[l].comm, size_, id, rank_, &config))) {
        c.settle_locked(c.lanes[l], "NCCL initialisation", -1);
      }
    }
  }
  c.monitor = std::thread([core = core_.get()] { core->monitor_loop(); });
}

NcclCommunicator::~NcclCommunicator() { core_->close(); }

const std::string& NcclCommunicator::name() const { return core_->group; }

cudaStream_t NcclCommunicator::stream() const {
  return core_->lanes_used > 0 ? core_->lanes[0].stream : core_->compute;
}

void NcclCommunicator::check() {
  std::lock_guard<std::mutex> lock(core_->mu);
  core_->check_locked();
}

void NcclCommunicator::synchronize() {
  if (size_ > 1) core_->wait_for(0);
}

namespace {
template <typename T>
bool all_reduce_on(NcclCommunicator::Core& core, T* data, int64_t n, ncclDataType_t type) {
  NUPIPE_CHECK(n >= 0, "all_reduce_sum of " + std::to_string(n) + " elements");
  if (core.size == 1 || n == 0) return false;
  NUPIPE_CHECK(data != nullptr, "all_reduce_sum on a null buffer");
  require_device(data, "all_reduce_sum");
  core.post(0, "all-reduce", -1, true, [&](ncclComm_t comm, cudaStream_t s) {
    return NUPIPE_NCCL_NB(
        ncclAllReduce(data, data, static_cast<size_t>(n), type, ncclSum, comm, s));
  });
  return true;
}
}  // namespace

void NcclCommunicator::all_reduce_sum(float* data, int64_t n) {
  if (all_reduce_on(*core_, data, n, ncclFloat)) count_all_reduce(n * 4);
}
void NcclCommunicator::all_reduce_sum(double* data, int64_t n) {
  if (all_reduce_on(*core_, data, n, ncclDouble)) count_all_reduce(n * 8);
}

void NcclCommunicator::reduce_scatter_sum(const float* send, float* recv,
                                          int64_t count_per_rank) {
  const int64_t count = count_per_rank;
  NUPIPE_CHECK(count >= 0, "reduce_scatter_sum of " + std::to_string(count) + " per rank");
  if (count == 0) return;
  NUPIPE_CHECK(send != nullptr && recv != nullptr, "reduce_scatter_sum on a null buffer");
  NUPIPE_CHECK(!buffers_overlap(send, count * size_ * 4, recv, count * 4),
               "reduce_scatter_sum: send and recv overlap; use a separate receive buffer");
  if (size_ == 1) {
    NUPIPE_CUDA_CHECK(cudaMemcpyAsync(recv, send, static_cast<size_t>(count) * 4,
                                      cudaMemcpyDeviceToDevice, core_->compute));
    return;
  }
  require_device(send, "reduce_scatter_sum");
  require_device(recv, "reduce_scatter_sum");
  core_->post(0, "reduce-scatter", -1, true, [&](ncclComm_t comm, cudaStream_t s) {
    return NUPIPE_NCCL_NB(ncclReduceScatter(send, recv, static_cast<size_t>(count), ncclFloat,
                                            ncclSum, comm, s));
  });
  count_reduce_scatter(count * 4);
}

void NcclCommunicator::all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                                  int64_t count_per_rank) {
  const int64_t count = count_per_rank;
  NUPIPE_CHECK(count >= 0, "all_gather of " + std::to_string(count) + " per rank");
  NUPIPE_CHECK(send.dtype == recv.dtype, "all_gather between element types");
  if (count == 0) return;
  const int64_t es = static_cast<int64_t>(runtime::dtype_size(recv.dtype));
  NUPIPE_CHECK(send.ptr != nullptr && recv.ptr != nullptr, "all_gather on a null buffer");
  const bool in_place = send.ptr == (recv + rank_ * count).ptr;  // NCCL's in-place form too
  NUPIPE_CHECK(in_place || !buffers_overlap(send.ptr, count * es, recv.ptr, count * size_ * es),
               "all_gather: send overlaps recv without being this rank's block of it "
               "(in place means send == recv + rank() * count_per_rank)");
  if (size_ == 1) {
    if (!in_place) {
      NUPIPE_CUDA_CHECK(cudaMemcpyAsync(recv.ptr, send.ptr, static_cast<size_t>(count * es),
                                        cudaMemcpyDeviceToDevice, core_->compute));
    }
    return;
  }
  require_device(send.ptr, "all_gather");
  require_device(recv.ptr, "all_gather");
  const ncclDataType_t type = nccl_type_of(recv.dtype);
  core_->post(0, "all-gather", -1, true, [&](ncclComm_t comm, cudaStream_t s) {
    return NUPIPE_NCCL_NB(
        ncclAllGather(send.ptr, recv.ptr, static_cast<size_t>(count), type, comm, s));
  });
  count_all_gather(count * es);
}

void NcclCommunicator::broadcast(float* data, int64_t n, int root) {
  NUPIPE_CHECK(n >= 0, "broadcast of " + std::to_string(n) + " elements");
  NUPIPE_CHECK(root >= 0 && root < size_, "broadcast root " + std::to_string(root) +
                                              " outside a group of " + std::to_string(size_));
  if (size_ == 1 || n == 0) return;
  NUPIPE_CHECK(data != nullptr, "broadcast of a null buffer");
  require_device(data, "broadcast");
  core_->post(0, "broadcast", -1, true, [&](ncclComm_t comm, cudaStream_t s) {
    return NUPIPE_NCCL_NB(
        ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, root, comm, s));
  });
  count_broadcast(n * 4, root);
}

namespace {
void check_p2p(int64_t n, int peer, int tag, int rank, int size, int lanes, const char* what) {
  NUPIPE_CHECK(n >= 0, std::string(what) + " of " + std::to_string(n) + " elements");
  NUPIPE_CHECK(peer >= 0 && peer < size, std::string(what) + " peer " + std::to_string(peer) +
                                             " outside a group of " + std::to_string(size));
  NUPIPE_CHECK(tag >= 0, std::string(what) + " tag " + std::to_string(tag) + " is negative");
  NUPIPE_CHECK(peer != rank, std::string(what) + " to oneself: the NCCL communicator does not "
                                                 "support it (use a device copy)");
  NUPIPE_CHECK(lanes == 2, std::string(what) + " on an NCCL communicator built for collectives "
                                               "only (point_to_point = false)");
}
}  // namespace

// A message of 0 elements is complete at once on both sides (both agree on n), so it takes
// no place in the order in which a pair's messages match.
Request NcclCommunicator::isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) {
  check_p2p(n, peer, tag, rank_, size_, core_->lanes_used, "isend");
  if (n == 0) return Request();
  NUPIPE_CHECK(data.ptr != nullptr, "isend of a null buffer");
  require_device(data.ptr, "isend");
  const ncclDataType_t type = nccl_type_of(data.dtype);
  const uint64_t id =
      core_->post(peer > rank_ ? 0 : 1, "send", peer, false, [&](ncclComm_t comm, cudaStream_t s) {
        return NUPIPE_NCCL_NB(ncclSend(data.ptr, static_cast<size_t>(n), type, peer, comm, s));
      });
  count_send(n * static_cast<int64_t>(runtime::dtype_size(data.dtype)), peer);
  return Request(std::make_unique<NcclRequest>(core_, id));
}

Request NcclCommunicator::irecv(runtime::DevPtr data, int64_t n, int peer, int tag) {
  check_p2p(n, peer, tag, rank_, size_, core_->lanes_used, "irecv");
  if (n == 0) return Request();
  NUPIPE_CHECK(data.ptr != nullptr, "irecv into a null buffer");
  require_device(data.ptr, "irecv");
  const ncclDataType_t type = nccl_type_of(data.dtype);
  const uint64_t id = core_->post(
      peer < rank_ ? 0 : 1, "receive", peer, false, [&](ncclComm_t comm, cudaStream_t s) {
        return NUPIPE_NCCL_NB(ncclRecv(data.ptr, static_cast<size_t>(n), type, peer, comm, s));
      });
  return Request(std::make_unique<NcclRequest>(core_, id));
}

void NcclCommunicator::barrier() {
  if (size_ == 1) return;
  synchronize();
  group_.barrier();
}

}  // namespace nupipe::parallel
