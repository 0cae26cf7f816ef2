// trace_file.h: writes every rank's spans as one Chrome trace (run.dir/trace.json, one
// process per rank), viewable in Perfetto or chrome://tracing.
#pragma once

#include <string>

#include "parallel/comm/communicator.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/topology.h"
#include "parallel/pipeline/trace.h"

namespace nupipe::launcher {

// Collective over `world`, right after a barrier: gives every rank's trace one time origin.
// Ranks on rank 0's host take rank 0's clock reading itself (steady_clock is one monotonic
// clock per host), so their spans align exactly; ranks on other hosts take the moment they
// leave the barrier, which aligns them to within the barrier's exit skew.
void align_trace_clocks(parallel::Trace& trace, parallel::MpiCommunicator& world,
                        const std::string& host);

// Collective over `world`: each rank writes its part next to `path`, rank 0 merges them into
// `path` and removes the parts.
void write_chrome_trace(const parallel::Trace& trace, const parallel::Topology& topology,
                        parallel::Communicator& world, const std::string& path);

}  // namespace nupipe::launcher
