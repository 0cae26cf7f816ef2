// host_staging.h: device memory to and from checkpoint files through one bounded host buffer,
// a chunk at a time, by the backend's own copies: no device pointer reaches HDF5 or a checksum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/backend.h"

namespace nupipe::checkpoint {

// The default bound on one chunk: a save or load holds at most this much host memory for
// tensors (plus half of it again to round bf16), whatever the size of the state.
inline constexpr size_t kStagingBytes = size_t{4} << 20;

// The buffers are the backend's host staging memory (page-locked on cuda, so its copies go
// straight to and from them), outside the allocator's tags.
class HostStaging {
 public:
  // chunk_bytes: the most bytes of fp32 values one chunk holds (at least one element).
  explicit HostStaging(runtime::Backend& backend, size_t chunk_bytes = kStagingBytes);

  // Copies n fp32 elements of device memory at `src` to the host a chunk at a time; for each,
  // sink(host, first, count) gets elements [first, first + count) of the range, in order.
  using Sink = std::function<void(const float* host, int64_t first, int64_t count)>;
  void to_host(const float* src, int64_t n, const Sink& sink);

  // Fills n elements of device memory at `dst` (f32, or bf16 rounded to nearest even) a chunk
  // at a time: source(host, first, count) writes the fp32 values of elements
  // [first, first + count) into host, which are then copied to the device.
  using Source = std::function<void(float* host, int64_t first, int64_t count)>;
  void from_host(runtime::DevPtr dst, int64_t n, const Source& source);
  // The same with zeros (ZeRO-1's padding, which no dataset holds).
  void zeros_to_device(runtime::DevPtr dst, int64_t n);

  int64_t chunk_elements() const { return chunk_; }

 private:
  float* f32_buffer(int64_t n);

  runtime::Backend& backend_;
  // One staging buffer, grown to the largest chunk used (at most chunk_ elements).
  class Buffer {
   public:
    explicit Buffer(runtime::Backend& backend) : backend_(backend) {}
    ~Buffer() { backend_.release_host_staging(data_); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    void* at_least(size_t bytes);

   private:
    runtime::Backend& backend_;
    void* data_ = nullptr;
    size_t bytes_ = 0;
  };

  int64_t chunk_;
  Buffer f32_;   // fp32 values
  Buffer bf16_;  // the same rounded, for bf16 destinations
};

}  // namespace nupipe::checkpoint
