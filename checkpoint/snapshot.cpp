// snapshot.cpp: the pieces a rank saves (its ZeRO share of the master weights and moments,
// tied copies left to their owner), and their host copy for a background save.
#include "checkpoint/snapshot.h"

#include <algorithm>

#include "optim/zero.h"
#include "runtime/backend.h"
#include "runtime/check.h"

namespace nupipe::checkpoint {

std::vector<SavePiece> rank_pieces(const RankPart& part) {
  const runtime::ParamStore& store = *part.store;
  const optim::AdamW& adamw = *part.adamw;
  const optim::Shard share = optim::shard_of(store.numel(), part.replicas, part.replica);
  const int64_t end = std::min(share.end, store.numel());
  NUPIPE_CHECK(adamw.begin() <= share.begin && end <= adamw.end(),
               "the optimizer state does not cover this rank's checkpoint share");
  std::vector<SavePiece> out;
  const float* master = adamw.master().f32();  // fp32 master weights, whatever the precision
  for (const runtime::SpecPiece& p : store.pieces(share.begin, end)) {
    if (p.spec->tied_copy) continue;
    const int64_t in_tensor = p.begin - p.spec->offset;
    const int64_t in_state = p.begin - adamw.begin();
    out.push_back({model_dataset(p.spec->name), in_tensor, master + in_state, p.numel()});
    out.push_back({exp_avg_dataset(p.spec->name), in_tensor, adamw.exp_avg().f32() + in_state,
                   p.numel()});
    out.push_back({exp_avg_sq_dataset(p.spec->name), in_tensor,
                   adamw.exp_avg_sq().f32() + in_state, p.numel()});
  }
  return out;
}

int64_t snapshot_bytes(const std::vector<runtime::TensorSpec>& stage_specs, int64_t stage_numel,
                       int replica, int replicas) {
  const optim::Shard share = optim::shard_of(stage_numel, replicas, replica);
  const int64_t end = std::min(share.end, stage_numel);
  int64_t elements = 0, offset = 0;  // the specs laid end to end, in order, as ParamStore does
  for (const runtime::TensorSpec& s : stage_specs) {
    const int64_t lo = std::max(share.begin, offset), hi = std::min(end, offset + s.numel());
    offset += s.numel();
    if (!s.tied_copy) elements += std::max<int64_t>(0, hi - lo);
  }
  return 3 * elements * static_cast<int64_t>(sizeof(float));
}

Snapshot::~Snapshot() {
  host_.on_free(runtime::MemTag::checkpoint_snapshot, data_.size() * sizeof(float));
}

namespace {
size_t elements_of(const std::vector<SavePiece>& pieces) {
  size_t total = 0;
  for (const SavePiece& p : pieces) total += static_cast<size_t>(p.n);
  return total;
}
}  // namespace

void Snapshot::reserve(const RankPart& part) {
  const size_t total = elements_of(rank_pieces(part));
  if (total == data_.size()) return;  // the layout never changes within a run
  host_.on_free(runtime::MemTag::checkpoint_snapshot, data_.size() * sizeof(float));
  data_.clear();
  data_.shrink_to_fit();
  data_.resize(total);  // zero-filled: every page touched now
  host_.on_alloc(runtime::MemTag::checkpoint_snapshot, total * sizeof(float));
}

void Snapshot::take(const RankPart& part) {
  reserve(part);  // a no-op after the first
  const std::vector<SavePiece> src = rank_pieces(part);
  pieces_.clear();
  runtime::Backend& backend = part.store->backend();
  size_t at = 0;
  for (const SavePiece& p : src) {
    backend.copy_to_host(data_.data() + at, p.data, static_cast<size_t>(p.n) * sizeof(float));
    pieces_.push_back({p.name, p.begin, data_.data() + at, p.n});
    at += static_cast<size_t>(p.n);
  }
}

}  // namespace nupipe::checkpoint
