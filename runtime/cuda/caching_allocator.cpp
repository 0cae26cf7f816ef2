// caching_allocator.cpp: size-class free lists over cudaMalloc/cudaFree.
#include "runtime/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include <string>

#include "runtime/allocator.h"
#include "runtime/cuda/cuda_check.h"

namespace nupipe::cuda {

size_t CachingAllocator::size_class(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t{1} << 20;
  if (bytes <= kLarge) return (bytes + kSmall - 1) / kSmall * kSmall;
  size_t p = kLarge;  // largest power of two <= bytes
  while (p <= bytes / 2) p *= 2;
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes) {
  NUPIPE_CHECK(bytes > 0, "CachingAllocator::allocate of 0 bytes");
  const size_t cls = size_class(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= static_cast<int64_t>(cls);
    live_[p] = cls;
    live_bytes_ += static_cast<int64_t>(cls);
    return p;
  }
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, cls);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear it, give the cache back, retry once
    free_cached_locked();
    err = cudaMalloc(&p, cls);
  }
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    NUPIPE_FAIL(ExitCode::internal, "cudaMalloc",
                std::string("CUDA error ") + cudaGetErrorName(err) + " allocating " +
                    runtime::format_bytes(static_cast<double>(cls)) + " (" +
                    runtime::format_bytes(static_cast<double>(live_bytes_)) +
                    " in use by nupipe, " + runtime::format_bytes(static_cast<double>(free_b)) +
                    " free of " + runtime::format_bytes(static_cast<double>(total_b)) + ")",
                "lower train.micro_batch or seq_len, enable train.recompute, or set "
                "runtime.memory_gib below the device's memory so the planner fits the stage");
  }
  ++mallocs_;
  live_[p] = cls;
  live_bytes_ += static_cast<int64_t>(cls);
  return p;
}

void CachingAllocator::release(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  NUPIPE_CHECK(it != live_.end(), "CachingAllocator::release of a pointer it did not hand out");
  const size_t cls = it->second;
  live_.erase(it);
  live_bytes_ -= static_cast<int64_t>(cls);
  free_[cls].push_back(ptr);
  cached_bytes_ += static_cast<int64_t>(cls);
}

void CachingAllocator::free_cached_locked() {
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) NUPIPE_CUDA_CHECK(cudaFree(p));
  }
  free_.clear();
  cached_bytes_ = 0;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

CachingAllocator::~CachingAllocator() {
  // No throwing from a destructor: errors here (a dead context at exit) are ignored.
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) (void)cudaFree(p);
  }
  for (auto& [p, cls] : live_) (void)cudaFree(p);
}

int64_t CachingAllocator::live_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_bytes_;
}
int64_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_bytes_;
}
int64_t CachingAllocator::device_mallocs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mallocs_;
}

}  // namespace nupipe::cuda
