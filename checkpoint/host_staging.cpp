// host_staging.cpp: chunked device <-> host copies through the backend (copy_to_host /
// copy_from_host), with bf16 rounded on the host on the way in.
#include "checkpoint/host_staging.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/dtype.h"

namespace nupipe::checkpoint {

HostStaging::HostStaging(runtime::Backend& backend, size_t chunk_bytes)
    : backend_(backend),
      chunk_(std::max<int64_t>(1, static_cast<int64_t>(chunk_bytes / sizeof(float)))),
      f32_(backend),
      bf16_(backend) {}

void* HostStaging::Buffer::at_least(size_t bytes) {
  if (bytes > bytes_) {
    backend_.release_host_staging(data_);
    data_ = nullptr;
    bytes_ = 0;
    data_ = backend_.allocate_host_staging(bytes);
    bytes_ = bytes;
  }
  return data_;
}

float* HostStaging::f32_buffer(int64_t n) {
  return static_cast<float*>(f32_.at_least(static_cast<size_t>(n) * sizeof(float)));
}

void HostStaging::to_host(const float* src, int64_t n, const Sink& sink) {
  NUPIPE_CHECK(n >= 0, "HostStaging::to_host: negative count");
  for (int64_t first = 0; first < n; first += chunk_) {
    const int64_t count = std::min(chunk_, n - first);
    float* host = f32_buffer(count);
    backend_.copy_to_host(host, src + first, static_cast<size_t>(count) * sizeof(float));
    sink(host, first, count);
  }
}

void HostStaging::from_host(runtime::DevPtr dst, int64_t n, const Source& source) {
  NUPIPE_CHECK(n >= 0, "HostStaging::from_host: negative count");
  NUPIPE_CHECK(dst.dtype == runtime::DType::f32 || dst.dtype == runtime::DType::bf16,
               std::string("HostStaging::from_host: a ") + runtime::dtype_name(dst.dtype) +
                   " destination");
  for (int64_t first = 0; first < n; first += chunk_) {
    const int64_t count = std::min(chunk_, n - first);
    float* host = f32_buffer(count);
    source(host, first, count);
    const runtime::DevPtr at = dst + first;
    if (dst.dtype == runtime::DType::f32) {
      backend_.copy_from_host(at.ptr, host, static_cast<size_t>(count) * sizeof(float));
      continue;
    }
    auto* rounded =
        static_cast<uint16_t*>(bf16_.at_least(static_cast<size_t>(count) * sizeof(uint16_t)));
    for (int64_t i = 0; i < count; ++i) rounded[i] = runtime::bf16_from_f32(host[i]);
    backend_.copy_from_host(at.ptr, rounded, static_cast<size_t>(count) * sizeof(uint16_t));
  }
}

void HostStaging::zeros_to_device(runtime::DevPtr dst, int64_t n) {
  from_host(dst, n, [](float* host, int64_t, int64_t count) { std::fill_n(host, count, 0.0f); });
}

}  // namespace nupipe::checkpoint
