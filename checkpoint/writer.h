// writer.h: saving one checkpoint, collectively: every rank writes its own part of the global
// tensors into one shared state.h5 (parallel HDF5), rank 0 writes the manifest last and
// renames step_N.tmp/ to step_N/ (the commit). Nothing is marked committed unless all of it
// is on disk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_info.h"
#include "checkpoint/host_staging.h"
#include "optim/adamw.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/param_store.h"

namespace nupipe::checkpoint {

// What one rank contributes: its stage's store and optimizer, and which part of them it
// writes. Each replica of a stage writes its 1/data share of the stage's flat buffer (its
// ZeRO-1 shard, which is also where its optimizer state lives when zero = 1), so the stage's
// writing is spread over its replicas. Tied copies (spec.tied_copy) are written by their owner.
// The tensors are read from the backend's memory through a host buffer of at most
// staging_bytes, a chunk at a time (host_staging.h): HDF5 and the checksums see host memory
// only, whatever the device.
// With `snapshot` set (an asynchronous save), the pieces are written from that host copy
// instead (checkpoint/snapshot.h), and store and adamw are not read at all: training may go
// on changing them meanwhile.
class Snapshot;
struct RankPart {
  const runtime::ParamStore* store = nullptr;
  const optim::AdamW* adamw = nullptr;
  int replica = 0;   // this rank's index in its stage's data group
  int replicas = 1;  // the data degree
  size_t staging_bytes = kStagingBytes;
  const Snapshot* snapshot = nullptr;
};

struct SaveResult {
  std::string dir;       // the committed directory
  int64_t bytes = 0;     // state.h5's size
  double seconds = 0.0;  // from the first write to the commit
};

// Collective over `world` (every rank calls it with the same root, step, info and
// global_specs, the specs of the whole model). Writes root/step_NNNNNNNN.tmp/, then commits
// it as root/step_NNNNNNNN/. Every phase is a wait the world's watchdog bounds. On any rank's
// failure every rank throws nupipe::Error (checkpoint) with the failing rank's reason, and
// nothing is committed; the temporary directory is removed.
SaveResult save_checkpoint(const std::string& root, const CheckpointInfo& info,
                           const std::vector<runtime::TensorSpec>& global_specs,
                           const RankPart& part, parallel::MpiCommunicator& world);

// "step_00000040"
std::string step_dir_name(int64_t step);

// Dataset names in state.h5.
std::string model_dataset(const std::string& tensor);       // "model/<tensor>"
std::string exp_avg_dataset(const std::string& tensor);     // "optim/exp_avg/<tensor>"
std::string exp_avg_sq_dataset(const std::string& tensor);  // "optim/exp_avg_sq/<tensor>"

}  // namespace nupipe::checkpoint
