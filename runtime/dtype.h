// dtype.h: element types, bf16 conversions and typed device pointers. A kernel of the Backend
// takes typed pointers, so one layer runs in fp32 or bf16 (and on any device) unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nupipe::runtime {

enum class DType { f32, bf16, i32 };
size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "f32", "bf16", "i32"

// bf16 is the upper half of an IEEE binary32: 8 exponent bits, 7 mantissa bits. float -> bf16
// rounds to nearest, ties to even (what GPUs' conversion instructions do); NaN stays a quiet NaN.
inline uint16_t bf16_from_f32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float f32_from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// The float nearest to f that bf16 represents (round-trip through bf16).
inline float round_to_bf16(float f) { return f32_from_bf16(bf16_from_f32(f)); }

// A device pointer with its element type; + moves by elements. Kernels accept any dtype their
// documentation allows for each operand and compute in fp32.
struct DevPtr {
  void* ptr = nullptr;
  DType dtype = DType::f32;
  DevPtr operator+(int64_t elements) const {
    return {static_cast<char*>(ptr) + elements * static_cast<int64_t>(dtype_size(dtype)), dtype};
  }
};
struct ConstDevPtr {
  const void* ptr = nullptr;
  DType dtype = DType::f32;
  ConstDevPtr() = default;
  ConstDevPtr(const void* p, DType d) : ptr(p), dtype(d) {}
  ConstDevPtr(DevPtr p) : ptr(p.ptr), dtype(p.dtype) {}  // NOLINT: a mutable pointer reads too
  ConstDevPtr operator+(int64_t elements) const {
    return {static_cast<const char*>(ptr) + elements * static_cast<int64_t>(dtype_size(dtype)),
            dtype};
  }
};
// fp32 host/device memory as a typed pointer (optimizer state, gradients, loss buffers).
inline DevPtr f32_ptr(float* p) { return {p, DType::f32}; }
inline ConstDevPtr f32_ptr(const float* p) { return {p, DType::f32}; }

}  // namespace nupipe::runtime
