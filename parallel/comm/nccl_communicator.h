// nccl_communicator.h: the Communicator over NCCL for device buffers (built with the CUDA
// backend only). The group's MpiCommunicator is its host control plane (ranks, the unique id's
// broadcast, the barrier); NCCL is the device data plane (docs/architecture.md, "Key pieces").
//
// Which communicator a run uses (runtime.comm) is decided in parallel/comm/tensor_transport.h.
//
// Streams and ordering. Each NCCL communicator has its own CUDA stream. Every operation is
// ordered after the work already enqueued on the compute stream (an event recorded there, which
// the comm stream waits on) and needs no host synchronisation: collectives return once
// enqueued, and the compute stream waits (an event, on the device) for their result, so
// whatever is enqueued there next sees it. isend/irecv return a Request whose wait() polls the
// operation's CUDA event from the host; the compute stream does not wait for them (that would
// add dependencies MPI's semantics do not have): use the buffer only after wait().
//
// Point-to-point. NCCL has no tags: messages between two ranks match in posting order, so
// receives must be posted in the order of the sends (tags are range-checked only). NCCL runs a
// stream's operations one after another and a send blocks its stream until the receiver runs
// the matching receive, so sends to higher ranks (and receives from lower ones) travel on one
// communicator and stream, and the other direction on a second one: 1F1B's crossing sends
// (activations forward, gradients back) then never wait on each other. Collectives travel on
// the first. A send to oneself is refused. The first message between two ranks also connects
// them, which blocks the host until the peer posts its side (bounded by the timeout).
//
// Failure. The communicators are nonblocking (ncclConfig_t::blocking = 0) so no NCCL call can
// hang the host. Every wait (and a monitor thread, every 100 ms, for work nobody waits on)
// polls ncclCommGetAsyncError and the age of each pending operation against timeout_s
// (runtime.peer_timeout_s); on an error or a timeout it calls ncclCommAbort on both
// communicators, so the stuck kernels end, and the rank throws nupipe::peer_error (exit 5)
// naming the group, the operation and the peer. A failure the monitor finds is thrown by the
// next call on the communicator (or check()). After a failure every call throws.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "parallel/comm/communicator.h"
#include "parallel/comm/mpi_communicator.h"

namespace nupipe::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over group (every rank calls it, with its own device): sets the current device
  // to `device`, creates the comm streams, and builds the NCCL communicator(s) of the group
  // (rank 0's unique id broadcast over group). `compute` is the stream the backend enqueues
  // on. timeout_s <= 0: group's watchdog timeout (runtime.peer_timeout_s), else 60 s.
  // point_to_point = false builds one NCCL communicator instead of two, for groups that only
  // run collectives (the data group); isend/irecv are then refused. group must outlive this.
  NcclCommunicator(MpiCommunicator& group, int device, cudaStream_t compute,
                   double timeout_s = 0, bool point_to_point = true);
  // Waits for the pending operations (bounded by the timeout), then finalizes and destroys
  // the NCCL communicators; after a failure they are already aborted. Never throws.
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const;

  // f32 and f64 (ncclDouble). In place.
  void all_reduce_sum(float* data, int64_t n) override;
  void all_reduce_sum(double* data, int64_t n) override;
  void reduce_scatter_sum(const float* send, float* recv, int64_t count_per_rank) override;
  using Communicator::all_gather;
  using Communicator::irecv;
  using Communicator::isend;
  // f32, bf16 (ncclBfloat16) or i32.
  void all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                  int64_t count_per_rank) override;
  void broadcast(float* data, int64_t n, int root) override;
  Request isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) override;
  Request irecv(runtime::DevPtr data, int64_t n, int peer, int tag) override;
  // Every pending operation of this rank completes (synchronize()), then an MPI barrier on
  // the group's host plane.
  void barrier() override;

  // The host waits until every operation enqueued so far has completed, polling for errors
  // and the timeout (throws nupipe::peer_error). Not needed for correctness on the device.
  void synchronize();
  // Throws the failure the monitor thread found, if any (cheap; e.g. after the step's host
  // read of the loss, which a peer failure would otherwise let through with garbage).
  void check();
  // The stream collectives run on (for profiling and tests).
  cudaStream_t stream() const;

  struct Core;  // streams, NCCL communicators, pending operations (shared with Requests)

 private:
  std::shared_ptr<Core> core_;
  MpiCommunicator& group_;
  int rank_ = 0, size_ = 1;
};

}  // namespace nupipe::parallel
