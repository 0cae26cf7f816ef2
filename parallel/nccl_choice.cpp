// nccl_choice.cpp: whether NCCL can carry a run (every rank its own GPU), decided over MPI so
// that every rank gets the same answer.
#include <mpi.h>

#include "parallel/mpi_check.h"
#include "parallel/nccl_communicator.h"

namespace nupipe::parallel {

HostRanks host_ranks(MpiCommunicator& world) {
  HostRanks out;
  if (world.size() == 1) return out;
  Watchdog::Scope scope(world.watchdog(), "host split", &world.name(), &world.world_ranks());
  MPI_Comm host = MPI_COMM_NULL;
  NUPIPE_MPI(MPI_Comm_split_type(world.handle(), MPI_COMM_TYPE_SHARED, world.rank(),
                                 MPI_INFO_NULL, &host));
  const int rc_rank = MPI_Comm_rank(host, &out.local_rank);
  const int rc_size = MPI_Comm_size(host, &out.local_size);
  MPI_Comm_free(&host);
  NUPIPE_MPI(rc_rank);
  NUPIPE_MPI(rc_size);
  return out;
}

bool nccl_usable(MpiCommunicator& world, int local_device_count) {
  const HostRanks here = host_ranks(world);
  // Every local rank r < local_size must find device r: no two ranks of a host share one.
  int ok = local_device_count > 0 && here.local_size <= local_device_count ? 1 : 0;
  if (world.size() > 1) {
    Watchdog::Scope scope(world.watchdog(), "NCCL check", &world.name(), &world.world_ranks());
    NUPIPE_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, world.handle()));
  }
  return ok == 1;
}

}  // namespace nupipe::parallel
