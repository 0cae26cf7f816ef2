// tensor_transport.cpp: runtime.comm resolved collectively (every rank's GPU identity), and the
// factory that puts NCCL or host-staged MPI communicators under the process groups. The one
// place that knows which communicators this build has.
#include "parallel/comm/tensor_transport.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/staged_communicator.h"
#include "runtime/check.h"
#include "runtime/error.h"
#if defined(NUPIPE_HAVE_CUDA)
#include "runtime/cuda/cuda_backend.h"
#endif
#if defined(NUPIPE_WITH_NCCL)
#include "parallel/comm/nccl_communicator.h"
#endif

namespace nupipe::parallel {

const char* comm_kind_name(CommKind kind) {
  switch (kind) {
    case CommKind::mpi: return "mpi";
    case CommKind::mpi_staged: return "mpi (host-staged)";
    case CommKind::nccl: return "nccl";
  }
  return "?";
}

bool nccl_built() {
#if defined(NUPIPE_WITH_NCCL)
  return true;
#else
  return false;
#endif
}

bool nccl_usable(MpiCommunicator& world, const std::string& device_id, std::string* why) {
  // Rank 0 judges every rank's identity and broadcasts the verdict ("" = usable).
  const std::vector<std::string> ids = world.gather_text(device_id);
  std::string verdict;
  if (world.rank() == 0) {
    std::map<std::string, std::vector<int>> holders;
    for (size_t r = 0; r < ids.size(); ++r) holders[ids[r]].push_back(static_cast<int>(r));
    for (const auto& [id, ranks] : holders) {
      if (!id.empty() && ranks.size() < 2) continue;
      std::string list;
      for (size_t i = 0; i < ranks.size() && i < 8; ++i) {
        list += (i ? ", " : "") + std::to_string(ranks[i]);
      }
      if (ranks.size() > 8) list += ", ...";
      verdict = id.empty() ? "rank(s) " + list + " have no GPU"
                           : "ranks " + list + " share one GPU (" + id.substr(0, 13) + ")";
      break;
    }
  }
  verdict = world.broadcast_text(verdict);
  if (why) *why = verdict;
  return verdict.empty();
}

namespace {

// This rank's GPU identity ("" without one), for nccl_usable.
std::string device_identity(const runtime::Backend& backend) {
#if defined(NUPIPE_HAVE_CUDA)
  if (const auto* cuda = dynamic_cast<const runtime::CudaBackend*>(&backend)) {
    return cuda->device_uuid();
  }
#endif
  return {};
}

}  // namespace

CommChoice choose_comm(const std::string& setting, const runtime::Backend& backend,
                       MpiCommunicator& world) {
  if (backend.name() == "cpu") {
    if (setting == "nccl") {
      throw usage_error("runtime.comm = \"nccl\" needs runtime.device = \"cuda\"; this run "
                        "is on the cpu backend",
                        "set runtime.comm = \"auto\" or \"mpi\", or runtime.device = \"cuda\"");
    }
    return {CommKind::mpi, "the cpu backend: MPI on host memory"};
  }
  if (!nccl_built()) {
    if (setting == "nccl") {
      throw usage_error("runtime.comm = \"nccl\" but this build has no NCCL",
                        "set runtime.comm = \"auto\" or \"mpi\", or rebuild with NCCL beside "
                        "the CUDA toolkit (NCCL_HOME)");
    }
    return {CommKind::mpi_staged, "this build has no NCCL: MPI staged through host memory"};
  }
  if (setting == "mpi") {
    return {CommKind::mpi_staged, "runtime.comm = \"mpi\": MPI staged through host memory"};
  }
  std::string why;
  if (nccl_usable(world, device_identity(backend), &why)) {
    return {CommKind::nccl, "every rank has a GPU of its own"};
  }
  if (setting == "nccl") {
    throw usage_error("runtime.comm = \"nccl\" needs a GPU per rank: " + why,
                      "run at most one rank per GPU on every host, or set runtime.comm = "
                      "\"auto\" (MPI staged through host memory when ranks share a GPU)");
  }
  return {CommKind::mpi_staged, why + ": MPI staged through host memory"};
}

void build_device_plane(ProcessGroups& groups, CommKind kind, runtime::Backend& backend,
                        double timeout_s) {
  switch (kind) {
    case CommKind::mpi: return;  // the MPI communicators carry host memory themselves
    case CommKind::mpi_staged:
      groups.set_device_plane([&backend](MpiCommunicator& group, bool) {
        return std::make_unique<StagedCommunicator>(group, backend);
      });
      return;
    case CommKind::nccl:
#if defined(NUPIPE_WITH_NCCL)
    {
      auto& cuda = dynamic_cast<runtime::CudaBackend&>(backend);
      groups.set_device_plane([&cuda, timeout_s](MpiCommunicator& group, bool p2p) {
        return std::make_unique<NcclCommunicator>(group, cuda.device(), cuda.stream(),
                                                  timeout_s, p2p);
      });
      return;
    }
#else
      break;
#endif
  }
  NUPIPE_CHECK(false, std::string("communicator ") + comm_kind_name(kind) +
                          " is not built in");
}

}  // namespace nupipe::parallel
