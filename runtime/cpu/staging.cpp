// staging.cpp: bf16 <-> fp32 staging of kernel operands.
#include "runtime/cpu/staging.h"

#include "runtime/check.h"

namespace nupipe::runtime::cpu {

void widen(float* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_from_bf16(src[i]);
}

void narrow(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_f32(src[i]);
}

const float* Staging::in(ConstDevPtr p, int64_t n) {
  if (p.dtype == DType::f32) return static_cast<const float*>(p.ptr);
  NUPIPE_CHECK(p.dtype == DType::bf16, std::string("a kernel operand of dtype ") +
                                           dtype_name(p.dtype) + " (f32 or bf16 expected)");
  buffers_.emplace_back(new float[static_cast<size_t>(n)]);
  widen(buffers_.back().get(), static_cast<const uint16_t*>(p.ptr), n);
  return buffers_.back().get();
}

float* Staging::out(DevPtr p, int64_t n) {
  if (p.dtype == DType::f32) return static_cast<float*>(p.ptr);
  NUPIPE_CHECK(p.dtype == DType::bf16, std::string("a kernel output of dtype ") +
                                           dtype_name(p.dtype) + " (f32 or bf16 expected)");
  uint16_t* dst = static_cast<uint16_t*>(p.ptr);
  for (const Back& b : backs_) {
    if (b.dst == dst && b.n == n) return buffers_[b.buffer].get();
  }
  buffers_.emplace_back(new float[static_cast<size_t>(n)]);
  widen(buffers_.back().get(), dst, n);
  backs_.push_back({dst, buffers_.size() - 1, n});
  return buffers_.back().get();
}

Staging::~Staging() {
  for (const Back& b : backs_) narrow(b.dst, buffers_[b.buffer].get(), b.n);
}

}  // namespace nupipe::runtime::cpu
