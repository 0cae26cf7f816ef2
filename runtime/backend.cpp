// backend.cpp: accounted allocation shared by all backends, backend selection, host copies and
// the default (plain) host staging memory.
#include "runtime/backend.h"

#include <algorithm>
#include <cstdlib>

#include "runtime/check.h"
#include "runtime/cpu/cpu_backend.h"
#if defined(NUPIPE_HAVE_CUDA)
#include "runtime/cuda/cuda_backend.h"
#endif

namespace nupipe::runtime {

void Backend::set_memory_limit(int64_t bytes, std::string owner) {
  limit_ = bytes;
  owner_ = std::move(owner);
}

void* Backend::allocate(size_t bytes, MemTag tag) {
  if (limit_ > 0 && memory_.current_total() + static_cast<int64_t>(bytes) > limit_) {
    std::string held;
    for (int t = 0; t < kNumTags; ++t) {
      const int64_t b = memory_.current(static_cast<MemTag>(t));
      if (b > 0) held += std::string(held.empty() ? "" : ", ") + tag_name(static_cast<MemTag>(t)) +
                         " " + format_bytes(static_cast<double>(b));
    }
    throw usage_error(owner_ + " is out of its memory budget: " +
                          format_bytes(static_cast<double>(bytes)) + " more " + tag_name(tag) +
                          " on top of the " + format_bytes(memory_.current_total()) + " held (" +
                          held + ") exceeds " + format_bytes(static_cast<double>(limit_)),
                      "raise runtime.memory_gib, lower train.micro_batch, or let the planner fit "
                      "it (parallel.stage_layers = \"auto\", train.recompute = \"auto\"); the "
                      "cost model predicted this stage within the budget, so please also report "
                      "run.dir/memory.json");
  }
  void* p = bytes ? raw_allocate(bytes) : nullptr;
  memory_.on_alloc(tag, bytes);
  return p;
}

void* Backend::allocate_host_staging(size_t bytes) {
  constexpr size_t kAlign = 64;
  void* p = std::aligned_alloc(kAlign, (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign);
  if (!p) {
    throw Error(ExitCode::internal, "out of host memory allocating a " +
                                        format_bytes(static_cast<double>(bytes)) +
                                        " staging buffer");
  }
  return p;
}

void Backend::release_host_staging(void* ptr) { std::free(ptr); }

void Backend::release(void* ptr, size_t bytes, MemTag tag) {
  if (ptr) raw_release(ptr);
  memory_.on_free(tag, bytes);
}

void Backend::linear_forward(DevPtr y, ConstDevPtr x, ConstDevPtr w, ConstDevPtr b, int64_t N,
                             int64_t in, int64_t out, float beta, DevPtr gelu_out) {
  gemm(false, true, N, out, in, 1.0f, x, in, w, in, beta, y, out);
  add_bias(y, b, N, out);
  if (gelu_out.ptr) gelu_forward(gelu_out, y, N * out);
}

std::unique_ptr<Backend> make_backend(const std::string& device, int local_rank) {
  if (device == "cpu") return std::make_unique<CpuBackend>();
#if defined(NUPIPE_HAVE_CUDA)
  if (device == "cuda") {
    const int visible = CudaBackend::device_count();
    // No device: the constructor refuses with the runtime's reason.
    return std::make_unique<CudaBackend>(visible > 0 ? local_rank % visible : -1);
  }
#endif
  throw usage_error("runtime.device = \"" + device + "\" is not available in this build",
                    "use runtime.device = \"cpu\"; the cuda backend needs a build with "
                    "NUPIPE_CUDA=ON on a machine with nvcc");
}

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> out(t.numel());
  if (t.dtype() == DType::bf16) {
    std::vector<uint16_t> raw(t.numel());
    t.backend().copy_to_host(raw.data(), t.bf16(), t.bytes());
    for (size_t i = 0; i < raw.size(); ++i) out[i] = f32_from_bf16(raw[i]);
    return out;
  }
  t.backend().copy_to_host(out.data(), t.f32(), t.bytes());
  return out;
}

std::vector<int32_t> to_host_i32(const Tensor& t) {
  std::vector<int32_t> out(t.numel());
  t.backend().copy_to_host(out.data(), t.i32(), t.bytes());
  return out;
}

void from_host(Tensor& t, const std::vector<float>& values) {
  NUPIPE_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_host size mismatch");
  if (t.dtype() == DType::bf16) {  // rounded to nearest even
    std::vector<uint16_t> raw(values.size());
    for (size_t i = 0; i < raw.size(); ++i) raw[i] = bf16_from_f32(values[i]);
    t.backend().copy_from_host(t.bf16(), raw.data(), t.bytes());
    return;
  }
  t.backend().copy_from_host(t.f32(), values.data(), t.bytes());
}

void from_host(Tensor& t, const std::vector<int32_t>& values) {
  NUPIPE_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_host size mismatch");
  t.backend().copy_from_host(t.i32(), values.data(), t.bytes());
}

}  // namespace nupipe::runtime
