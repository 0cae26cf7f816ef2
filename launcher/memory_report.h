// memory_report.h: run.dir/memory.json: for every rank its stage and, per allocator tag, the
// bytes the cost model predicted and the peak the allocator measured, so the model can be
// checked on any layout without reading logs.
#pragma once

#include <string>

#include "launcher/stage.h"
#include "parallel/comm/topology.h"

namespace nupipe::launcher {

class Checkpointer;

// Collective over the world: every rank's figures are gathered; rank 0 writes `path`. With
// `checkpointer`, each rank also has "host_tags": the host memory outside the backend,
// checkpoint_snapshot (checkpoint.async's snapshot: predicted from the specs and the shard,
// measured as allocated, at start-up; absent without async, which holds no snapshot).
void write_memory_json(const Stage& stage, parallel::ProcessGroups& groups,
                       const std::string& path, const Checkpointer* checkpointer = nullptr);

}  // namespace nupipe::launcher
