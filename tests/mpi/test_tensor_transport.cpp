// test_tensor_transport.cpp: runtime.comm's resolution. nccl_usable judges GPU identities (the same
// verdict and reason on every rank); with the cpu backend "auto" and "mpi" give MPI on host
// memory and "nccl" is refused with exit 2 on every rank.
#include <gtest/gtest.h>

#include <string>

#include "parallel/comm/tensor_transport.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/error.h"

namespace nupipe::parallel {
namespace {

TEST(TensorTransport, NcclUsableWhenEveryRankHasItsOwnGpu) {
  MpiCommunicator world;
  const int r = world.rank(), s = world.size();
  std::string why = "unset";
  EXPECT_TRUE(nccl_usable(world, "GPU-" + std::to_string(r), &why));
  EXPECT_EQ(why, "");
  if (s < 2) GTEST_SKIP() << "sharing needs 2 ranks";
  // Ranks 0 and 1 on one GPU, the rest on their own.
  EXPECT_FALSE(nccl_usable(world, "GPU-" + std::to_string(r < 2 ? 0 : r), &why));
  EXPECT_EQ(why, "ranks 0, 1 share one GPU (GPU-0)");
  // The last rank without a GPU: the same verdict everywhere.
  EXPECT_FALSE(nccl_usable(world, r == s - 1 ? "" : "GPU-" + std::to_string(r), &why));
  EXPECT_EQ(why, "rank(s) " + std::to_string(s - 1) + " have no GPU");
}

TEST(TensorTransport, CpuBackendUsesMpiAndRefusesNccl) {
  MpiCommunicator world;
  runtime::CpuBackend cpu;
  for (const char* setting : {"auto", "mpi"}) {
    const CommChoice c = choose_comm(setting, cpu, world);
    EXPECT_EQ(c.kind, CommKind::mpi) << setting;
    EXPECT_EQ(std::string(comm_kind_name(c.kind)), "mpi");
  }
  try {
    choose_comm("nccl", cpu, world);
    ADD_FAILURE() << "runtime.comm = nccl on the cpu backend was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    EXPECT_NE(std::string(e.what()).find("needs runtime.device = \"cuda\""), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nupipe::parallel
