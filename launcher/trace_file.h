// trace_file.h: writes every rank's spans as one Chrome trace (run.dir/trace.json, one
// process per rank), viewable in Perfetto or chrome://tracing.
#pragma once

#include <string>

#include "parallel/communicator.h"
#include "parallel/topology.h"
#include "parallel/trace.h"

namespace nupipe::launcher {

// Collective over `world`: each rank writes its part next to `path`, rank 0 merges them into
// `path` and removes the parts.
void write_chrome_trace(const parallel::Trace& trace, const parallel::Topology& topology,
                        parallel::Communicator& world, const std::string& path);

}  // namespace nupipe::launcher
