// mpi_communicator.h: the Communicator over an MPI communicator it owns (a dup of
// MPI_COMM_WORLD, or a split of another MpiCommunicator); host buffers, MPI_ERRORS_RETURN.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/session/watchdog.h"

namespace nupipe::parallel {

class MpiCommunicator : public Communicator {
 public:
  // A duplicate of MPI_COMM_WORLD (collective over the world; MPI must be initialised, see
  // World). Its own context: its messages never match anyone else's use of the world.
  MpiCommunicator();
  ~MpiCommunicator() override;  // MPI_Comm_free, unless MPI is already finalised

  // MPI_Comm_split of parent: collective, every rank of parent must call it. Ranks with the
  // same color form a group, ordered by key (ties by parent rank). color must be >= 0, or
  // MPI_UNDEFINED to join no group, in which case the result is null.
  static std::unique_ptr<MpiCommunicator> split(const MpiCommunicator& parent, int color,
                                                int key);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // The MPI communicator (e.g. for parallel HDF5); it stays owned by this object.
  MPI_Comm handle() const { return comm_; }

  // Every blocking call (collectives, barrier, waiting for a send or receive) is then a
  // watchdog Scope naming `name` ("data group") and the peers: a peer that dies or freezes
  // ends this rank with exit code 5 within the watchdog's timeout. Inherited by split().
  void set_watchdog(Watchdog* watchdog, std::string name);
  Watchdog* watchdog() const { return watchdog_; }
  const std::string& name() const { return name_; }
  // The world ranks of this group's members, by group rank.
  const std::vector<int>& world_ranks() const { return world_ranks_; }

  void all_reduce_sum(float* data, int64_t n) override;
  void all_reduce_sum(double* data, int64_t n) override;
  void reduce_scatter_sum(const float* send, float* recv, int64_t count_per_rank) override;
  using Communicator::all_gather;
  using Communicator::irecv;
  using Communicator::isend;
  void all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                  int64_t count_per_rank) override;
  void broadcast(float* data, int64_t n, int root) override;
  Request isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) override;
  Request irecv(runtime::DevPtr data, int64_t n, int peer, int tag) override;
  void barrier() override;

  // Host control plane: every rank's `mine` arrives at `root`, in rank order (elsewhere the
  // result is empty). Collective.
  std::vector<std::string> gather_text(const std::string& mine, int root = 0);
  // root's `text` on every rank. Collective.
  std::string broadcast_text(const std::string& text, int root = 0);

  // Largest element count handed to one MPI call (default INT_MAX); larger buffers go in
  // chunks. Tests lower it to exercise the chunked paths on small buffers. Every rank of the
  // group must use the same value.
  void set_chunk_elements(int64_t elements);
  int64_t chunk_elements() const { return chunk_; }

 private:
  explicit MpiCommunicator(MPI_Comm adopted);  // takes ownership of an MPI_Comm
  void init_from_comm();
  template <typename T>
  void all_reduce_impl(T* data, int64_t n);
  void check_p2p(int64_t n, int peer, int tag, const char* what) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  int tag_ub_ = 32767;  // the largest tag this communicator accepts (MPI_TAG_UB)
  int64_t chunk_ = INT_MAX;
  Watchdog* watchdog_ = nullptr;
  std::string name_ = "world";
  std::vector<int> world_ranks_;
};

}  // namespace nupipe::parallel
