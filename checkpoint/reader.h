// reader.h: loading a checkpoint into any layout. Its bytes are verified against the manifest
// first (no parser sees an unverified byte); then each rank reads, by global name, the tensors
// of its own stage and the range of optimizer state it holds, whatever layout wrote them.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint_info.h"
#include "checkpoint/host_staging.h"
#include "optim/adamw.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/param_store.h"

namespace nupipe::checkpoint {

// Checks dir (manifest present and valid, every file's size and checksums) on this rank
// alone; one line per problem, empty when intact.
std::vector<std::string> verify_checkpoint(const std::string& dir);
// The same, the hashing shared by the ranks of `world` (collective). Every rank gets the
// problems found by any rank.
std::vector<std::string> verify_checkpoint(const std::string& dir,
                                           parallel::MpiCommunicator& world);

// The attributes of dir/state.h5 (call after verification). Throws nupipe::Error
// (checkpoint) when one is missing.
CheckpointInfo read_info(const std::string& dir);

// Reads this rank's part: every tensor of the store (a tied copy from its owner's dataset)
// and the optimizer state of adamw's flat range, then sets adamw's step count. Throws
// nupipe::Error (checkpoint) when a dataset is missing or has another shape. The values pass
// file -> host -> device through a host buffer of at most staging_bytes (host_staging.h).
void load_rank_part(const std::string& dir, runtime::ParamStore& store, optim::AdamW& adamw,
                    int64_t optimizer_steps, size_t staging_bytes = kStagingBytes);

// Every global tensor of the checkpoint (model/..., optim/...): name -> shape, for inspect.
std::vector<std::pair<std::string, std::vector<int64_t>>> list_tensors(const std::string& dir);

}  // namespace nupipe::checkpoint
