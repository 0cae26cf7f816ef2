// caching_allocator.h: device memory for CudaBackend: cudaMalloc'd blocks kept on size-class
// free lists and reused, so steady-state training never calls cudaMalloc/cudaFree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace nupipe::cuda {

// Reuse is safe without events because every user of the memory runs on the backend's one
// stream: a block freed on the host while kernels still read it is handed out again only to
// work queued after those kernels on the same stream. (A second stream - the communicator's -
// will need an event per freed block before the block is reused across streams.)
class CachingAllocator {
 public:
  CachingAllocator() = default;
  ~CachingAllocator();  // cudaFree of every block (the backend synchronises first)
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes` (> 0), 256-byte aligned. On cudaMalloc failure the free
  // lists are returned to the device and the allocation retried once; then it throws
  // nupipe::Error with the sizes involved.
  void* allocate(size_t bytes);
  void release(void* ptr);
  // Returns every cached (free) block to the device.
  void empty_cache();

  // The size class a request is served from: multiples of 512 B up to 1 MiB, then four
  // classes per power of two (at most 25% over the request).
  static size_t size_class(size_t bytes);

  int64_t live_bytes() const;      // handed out, by size class
  int64_t cached_bytes() const;    // on the free lists
  int64_t device_mallocs() const;  // cudaMalloc calls so far

 private:
  void free_cached_locked();

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> free blocks
  std::unordered_map<void*, size_t> live_;     // block -> size class
  int64_t live_bytes_ = 0;
  int64_t cached_bytes_ = 0;
  int64_t mallocs_ = 0;
};

// Transient device memory for one backend call (GEMM staging, sort buffers, partial sums),
// returned to the cache when the call ends; outside the per-tag accounting, like the cpu
// backend's staging buffers. Reuse by later work on the same stream is ordered after this
// call's kernels (see above).
class ScratchBlock {
 public:
  ScratchBlock(CachingAllocator& alloc, size_t bytes)
      : alloc_(alloc), ptr_(bytes ? alloc.allocate(bytes) : nullptr) {}
  ~ScratchBlock() {
    if (ptr_) alloc_.release(ptr_);
  }
  ScratchBlock(const ScratchBlock&) = delete;
  ScratchBlock& operator=(const ScratchBlock&) = delete;
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  CachingAllocator& alloc_;
  void* ptr_;
};

}  // namespace nupipe::cuda
