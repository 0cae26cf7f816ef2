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

// The buffer is plain (pageable) host memory, outside the allocator's tags: the Backend
// interface has no pinned allocation, so a cuda copy from it is staged by the driver.
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
  int64_t chunk_;
  std::vector<float> f32_;      // grown to the largest chunk used, at most chunk_ elements
  std::vector<uint16_t> bf16_;  // the same, for bf16 destinations
};

}  // namespace nupipe::checkpoint
