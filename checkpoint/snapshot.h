// snapshot.h: a host copy of what one rank writes into a checkpoint (its share of the fp32
// master weights, exp_avg and exp_avg_sq), taken at a step boundary and written from later.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/writer.h"
#include "runtime/allocator.h"

namespace nupipe::checkpoint {

// One piece a rank writes: `n` elements of dataset `name` from element `begin` of its
// flattening, from `data` (the backend's memory for rank_pieces(), host memory in a Snapshot).
struct SavePiece {
  std::string name;
  int64_t begin = 0;
  const float* data = nullptr;
  int64_t n = 0;
};

// The pieces of `part` in writing order, pointing into the backend's memory (never read on
// the host but through the backend's copies).
std::vector<SavePiece> rank_pieces(const RankPart& part);

// The host bytes a snapshot of `part` holds: 3 tensors x 4 bytes x the elements of the rank's
// share that are not tied copies. Computed from the stage's specs in flat order (offsets not
// read) and the shard arithmetic alone: the prediction memory.json sets beside the measured
// peak.
int64_t snapshot_bytes(const std::vector<runtime::TensorSpec>& stage_specs, int64_t stage_numel,
                       int replica, int replicas);

// The copy, made by the backend's copy_to_host straight into one host buffer that is kept
// between saves (at most one save is in flight) and counted under
// MemTag::checkpoint_snapshot in `host` (the caller's accounting of host memory).
class Snapshot {
 public:
  explicit Snapshot(runtime::MemoryAccounting& host) : host_(host) {}
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // Allocates the buffer for part's pieces and touches every page of it (at start-up: the
  // first save would otherwise pay the page faults of the whole buffer inside the step loop).
  void reserve(const RankPart& part);
  // Copies part's pieces now (the caller's thread; the backend's work must be complete, as it
  // is at a step boundary). Afterwards pieces() point into this snapshot.
  void take(const RankPart& part);
  const std::vector<SavePiece>& pieces() const { return pieces_; }
  int64_t bytes() const { return static_cast<int64_t>(data_.size() * sizeof(float)); }

 private:
  runtime::MemoryAccounting& host_;
  std::vector<float> data_;
  std::vector<SavePiece> pieces_;
};

}  // namespace nupipe::checkpoint
