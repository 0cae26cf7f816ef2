// memory_report.h: run.dir/memory.json: for every rank its stage and, per allocator tag, the
// bytes the cost model predicted and the peak the allocator measured, so the model can be
// checked on any layout without reading logs.
#pragma once

#include <string>

#include "launcher/stage.h"
#include "parallel/comm/topology.h"

namespace nupipe::launcher {

// Collective over the world: every rank's figures are gathered; rank 0 writes `path`.
void write_memory_json(const Stage& stage, parallel::ProcessGroups& groups,
                       const std::string& path);

}  // namespace nupipe::launcher
