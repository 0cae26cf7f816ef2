// allocator.h: tagged device-memory accounting. Every allocation names what it is for (params,
// grads, optimizer, activations, workspace, comm, loss chunk); current/peak bytes per tag kept.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nupipe::runtime {

// loss_workspace: the LM head's per-chunk buffers (final-LayerNorm output, logits) that
// train.loss_chunk bounds; kept apart from `workspace` so the chunking is measurable.
// checkpoint_snapshot: host memory, never a backend's: the copy of a rank's checkpoint share
// an asynchronous save writes from (counted by the checkpointer's own MemoryAccounting).
// weight_inputs: what a backward split in two passes keeps from its input-gradient pass (B)
// for its weight-gradient pass (W): each weight layer's input and output gradient
// (StageModel::backward_input / backward_weight; LayerCost::weight_bytes).
enum class MemTag : int {
  params,
  grads,
  optimizer,
  activations,
  workspace,
  comm,
  loss_workspace,
  checkpoint_snapshot,
  weight_inputs,
  count
};
inline constexpr int kNumTags = static_cast<int>(MemTag::count);

const char* tag_name(MemTag tag);

// Counts bytes per tag; owned by a Backend, updated on every allocate/free.
class MemoryAccounting {
 public:
  void on_alloc(MemTag tag, size_t bytes);
  void on_free(MemTag tag, size_t bytes);
  // `bytes` already held move from one tag to another (the total and its peak do not change).
  void on_retag(MemTag from, MemTag to, size_t bytes);

  int64_t current(MemTag tag) const { return current_[idx(tag)]; }
  int64_t peak(MemTag tag) const { return peak_[idx(tag)]; }
  int64_t current_total() const { return total_current_; }
  int64_t peak_total() const { return total_peak_; }
  // Restart peak tracking from the current values (e.g. to measure one step).
  void reset_peaks();

 private:
  static int idx(MemTag t) { return static_cast<int>(t); }
  std::array<int64_t, kNumTags> current_{};
  std::array<int64_t, kNumTags> peak_{};
  int64_t total_current_ = 0;
  int64_t total_peak_ = 0;
};

// "12.3 MiB" style formatting for logs and tables.
std::string format_bytes(double bytes);

}  // namespace nupipe::runtime
