// mpi_main.cpp: gtest main for tests run under mpirun: one MPI session around RUN_ALL_TESTS,
// failures printed by every rank, and one exit status agreed by all ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "parallel/session/world.h"

namespace {

// Ranks other than 0 print only their failures, tagged with the rank.
class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }
  void OnTestEnd(const testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(),
                   info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  nupipe::parallel::World world(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  if (!world.is_root()) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(world.rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = failed;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any_failed && !failed && world.is_root()) {
    std::fprintf(stderr, "another rank failed (see its [rank N] lines)\n");
  }
  return any_failed;
}
