// topology.h: the pp x dp grid of ranks (which stage and replica a rank is) and the process
// groups built on it: world, pipeline, data and embedding communicators.
#pragma once

#include <functional>
#include <memory>

#include "parallel/comm/communicator.h"
#include "parallel/comm/mpi_communicator.h"

namespace nupipe::parallel {

// rank = stage * data + replica: the data-parallel ranks of one stage are adjacent. They are
// the heaviest communicators (gradient all-reduce, or ZeRO's reduce-scatter + all-gather of a
// whole stage's parameters every step, against one activation tensor per microbatch between
// stages), and launchers map adjacent ranks to the same host (mpirun --map-by core/slot,
// srun's block distribution), so that traffic stays inside a host or a node's NVLink domain
// while the lighter pipeline sends cross hosts.
struct Topology {
  int pipeline = 1;  // stages
  int data = 1;      // replicas per stage
  int rank = 0;      // world rank

  int stage() const;
  int replica() const;
  int rank_of(int stage, int replica) const;  // the world rank at (stage, replica)
  bool first_stage() const;
  bool last_stage() const;
};

// The communicators a rank of the pp x dp grid needs. Built from MPI_COMM_WORLD, collectively:
// every rank of the world must construct it with the same degrees.
//
// Two planes (docs/architecture.md, "Key pieces"). The host control plane is MPI: world() and
// the *_host() groups carry host scalars (the loss, the gradient norm, agreement). The device
// data plane, pipeline(), data() and embedding(), carries tensors in the backend's memory:
// the MPI communicators themselves until set_device_plane() puts other communicators (NCCL,
// or MPI staged through host memory) over them.
class ProcessGroups {
 public:
  // pipeline * data must equal the world size (the launcher refuses other layouts earlier,
  // with a message for the user; here it is an internal check).
  // With a watchdog, every group's blocking calls are watched (MpiCommunicator::set_watchdog).
  ProcessGroups(int pipeline, int data, Watchdog* watchdog = nullptr);

  const Topology& topology() const { return topology_; }
  Communicator& world() { return *world_; }
  // The world as an MPI communicator (parallel HDF5 opens its shared files on it).
  MpiCommunicator& world_mpi() { return *world_; }
  // This replica's stages; its rank is the stage.
  Communicator& pipeline() { return pipeline_dev_ ? *pipeline_dev_ : *pipeline_; }
  // This stage's replicas; its rank is the replica.
  Communicator& data() { return data_dev_ ? *data_dev_ : *data_; }
  // First and last stage of this replica (rank 0 = first stage), for the tied embedding's
  // gradient; nullptr on middle stages. With pipeline == 1 a group of one.
  Communicator* embedding() {
    return embedding_dev_ ? embedding_dev_.get() : embedding_.get();
  }
  // The same groups on the host plane (host memory only).
  MpiCommunicator& pipeline_host() { return *pipeline_; }
  MpiCommunicator& data_host() { return *data_; }

  // Builds the device data plane: make(group, point_to_point) over each group's MPI
  // communicator (point_to_point only for the pipeline group, which sends; the data and
  // embedding groups only reduce and gather). Collective over the world, in one order on
  // every rank: pipeline, data, then embedding (where this rank has one). Call once, before
  // anything uses the groups' device plane.
  using PlaneFactory =
      std::function<std::unique_ptr<Communicator>(MpiCommunicator& group, bool point_to_point)>;
  void set_device_plane(const PlaneFactory& make);
  // Destroys the device plane (before the backend its communicators use goes away).
  void reset_device_plane();

 private:
  Topology topology_;
  std::unique_ptr<MpiCommunicator> world_, pipeline_, data_, embedding_;
  std::unique_ptr<Communicator> pipeline_dev_, data_dev_, embedding_dev_;
};

}  // namespace nupipe::parallel
