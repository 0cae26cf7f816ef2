// consensus.h: run a fallible step on every rank and make them agree on the verdict, so one
// rank's bad file or full disk stops every rank with the same exit code instead of a hang.
#pragma once

#include <functional>

#include "parallel/comm/communicator.h"

namespace nupipe::parallel {

// Runs `step`; then all ranks exchange their outcome (a collective on `world`). If any rank
// threw a nupipe::Error, every rank throws with the exit code of the lowest failing rank: a
// failing rank its own message, the others an error naming that rank. A failing non-root rank prints its
// own message to stderr (rank 0 prints for everyone else).
void agree(parallel::Communicator& world, const std::function<void()>& step);

}  // namespace nupipe::parallel
