// staged_communicator.h: a Communicator for device buffers over a host (MPI) communicator:
// each operation copies its device buffers to host memory, runs the host collective, and
// copies the result back. The data plane for GPU ranks that cannot use NCCL (several ranks
// sharing one GPU, or a build without NCCL): runtime.comm = "mpi" with runtime.device = "cuda".
//
// Semantics, counts and the bytes-on-the-wire accounting are the host communicator's: this
// class counts by the same convention (communicator.h), the host communicator's own counter
// counts the same bytes again and is not the one to read. The copies go through the
// backend's copy_to_host / copy_from_host, which return when done (ordered after the work
// already queued), so no extra synchronisation is needed. The host buffers are plain memory
// outside the allocator's tags, sized by the largest operation and kept for the next one. In a
// group of one the collectives stay on the device (no-ops, or a device copy).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/comm/communicator.h"
#include "runtime/backend.h"

namespace nupipe::parallel {

class StagedCommunicator final : public Communicator {
 public:
  // host and device must outlive this. host's collectives see only host memory.
  StagedCommunicator(Communicator& host, runtime::Backend& device);

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }

  void all_reduce_sum(float* data, int64_t n) override;
  void all_reduce_sum(double* data, int64_t n) override;
  void reduce_scatter_sum(const float* send, float* recv, int64_t count_per_rank) override;
  using Communicator::all_gather;
  using Communicator::irecv;
  using Communicator::isend;
  void all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                  int64_t count_per_rank) override;
  void broadcast(float* data, int64_t n, int root) override;
  // isend copies to a host buffer the Request owns before it returns (the device buffer may
  // be reused at once); irecv copies into the device buffer in wait().
  Request isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) override;
  Request irecv(runtime::DevPtr data, int64_t n, int peer, int tag) override;
  void barrier() override { host_.barrier(); }

 private:
  char* staging(size_t bytes, int which);  // host buffer `which` (0 or 1), grown to bytes
  template <typename T>
  void all_reduce_staged(T* data, int64_t n);

  Communicator& host_;
  runtime::Backend& device_;
  std::vector<char> buffer_[2];
};

}  // namespace nupipe::parallel
