// tensor_transport.h: which communicator carries a run's device tensors (runtime.comm = "auto" |
// "nccl" | "mpi") and building it under the process groups.
//
// The rule: NCCL when every rank has a GPU of its own; otherwise MPI. With the cpu backend,
// device memory is host memory and the MPI communicators carry it directly. With the cuda
// backend and MPI (ranks sharing a GPU, which NCCL refuses within one communicator, or a build
// without NCCL), tensors are staged through host memory (StagedCommunicator). "auto" applies
// the rule; "nccl" where it cannot hold is a usage error (exit 2) with the same verdict on
// every rank, since the decision is taken collectively.
#pragma once

#include <string>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/topology.h"
#include "runtime/backend.h"

namespace nupipe::parallel {

enum class CommKind {
  mpi,         // MPI on host memory (the cpu backend)
  mpi_staged,  // MPI, device tensors copied through host buffers
  nccl,        // NCCL on the device, MPI for the host plane
};
const char* comm_kind_name(CommKind kind);  // "mpi", "mpi (host-staged)", "nccl"

// Whether this build has the NCCL communicator.
bool nccl_built();

// True when every rank of world has a GPU of its own: every device_id (a GPU's identity, ""
// for none) is set and no two ranks hold the same one. Identities, not device counts, so a
// rank that sees one GPU of eight (CUDA_VISIBLE_DEVICES per rank, SLURM's --gpus-per-task)
// counts as having its own. Collective; every rank gets the same answer, and with false the
// same *why (which ranks share a GPU, or have none).
bool nccl_usable(MpiCommunicator& world, const std::string& device_id, std::string* why);

struct CommChoice {
  CommKind kind = CommKind::mpi;
  std::string reason;  // for the start-up log: why this plane
};

// Resolves runtime.comm (`setting`) for a run on `backend`. Collective over world. Throws
// usage_error (exit 2) for "nccl" where NCCL cannot carry the run, naming why and the fix.
CommChoice choose_comm(const std::string& setting, const runtime::Backend& backend,
                       MpiCommunicator& world);

// Builds the chosen data plane under groups (ProcessGroups::set_device_plane; collective).
// timeout_s: runtime.peer_timeout_s, NCCL's watchdog bound. backend must outlive groups' use
// of the plane.
void build_device_plane(ProcessGroups& groups, CommKind kind, runtime::Backend& backend,
                        double timeout_s);

}  // namespace nupipe::parallel
