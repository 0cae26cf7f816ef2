// allocator.cpp: per-tag current/peak byte counters and byte formatting.
#include "runtime/allocator.h"

#include <algorithm>
#include <cstdio>

namespace nupipe::runtime {

const char* tag_name(MemTag tag) {
  switch (tag) {
    case MemTag::params: return "params";
    case MemTag::grads: return "grads";
    case MemTag::optimizer: return "optimizer";
    case MemTag::activations: return "activations";
    case MemTag::workspace: return "workspace";
    case MemTag::comm: return "comm";
    case MemTag::loss_workspace: return "loss_workspace";
    case MemTag::checkpoint_snapshot: return "checkpoint_snapshot";
    case MemTag::weight_inputs: return "weight_inputs";
    case MemTag::count: break;
  }
  return "?";
}

void MemoryAccounting::on_alloc(MemTag tag, size_t bytes) {
  const int i = idx(tag);
  current_[i] += static_cast<int64_t>(bytes);
  peak_[i] = std::max(peak_[i], current_[i]);
  total_current_ += static_cast<int64_t>(bytes);
  total_peak_ = std::max(total_peak_, total_current_);
}

void MemoryAccounting::on_free(MemTag tag, size_t bytes) {
  current_[idx(tag)] -= static_cast<int64_t>(bytes);
  total_current_ -= static_cast<int64_t>(bytes);
}

void MemoryAccounting::on_retag(MemTag from, MemTag to, size_t bytes) {
  current_[idx(from)] -= static_cast<int64_t>(bytes);
  current_[idx(to)] += static_cast<int64_t>(bytes);
  peak_[idx(to)] = std::max(peak_[idx(to)], current_[idx(to)]);
}

void MemoryAccounting::reset_peaks() {
  peak_ = current_;
  total_peak_ = total_current_;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace nupipe::runtime
