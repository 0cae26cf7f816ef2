// consensus.cpp: exchange of per-rank outcomes and the common verdict.
#include "parallel/comm/consensus.h"

#include <cstdio>
#include <optional>
#include <vector>

#include "runtime/error.h"

namespace nupipe::parallel {

void agree(parallel::Communicator& world, const std::function<void()>& step) {
  std::optional<Error> mine;
  try {
    step();
  } catch (const Error& e) {
    mine = e;
  }
  std::vector<double> codes(world.size(), 0.0);
  codes[world.rank()] = mine ? static_cast<double>(mine->code()) : 0.0;
  world.all_reduce_sum(codes.data(), static_cast<int64_t>(codes.size()));
  int first = -1;
  for (int r = 0; r < world.size() && first < 0; ++r) first = codes[r] != 0.0 ? r : -1;
  if (first < 0) return;
  const auto code = static_cast<ExitCode>(static_cast<int>(codes[first]));
  if (mine) {
    if (world.rank() != 0 && codes[0] == 0.0) {
      std::fprintf(stderr, "error on rank %d: %s\n", world.rank(), mine->what());
      if (!mine->hint().empty()) std::fprintf(stderr, "HINT: %s\n", mine->hint().c_str());
    }
    // Its own message, but the lowest failing rank's exit code: every rank exits alike even
    // when two failed for different reasons.
    if (mine->code() != code) throw Error(code, mine->what(), mine->hint());
    throw *mine;
  }
  throw Error(code,
              "rank " + std::to_string(first) + " failed (its message is printed above)",
              "fix the problem that rank reports; every rank stops with the same exit code");
}

}  // namespace nupipe::parallel
