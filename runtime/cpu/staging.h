// staging.h: fp32 views of typed operands for one cpu kernel call. An f32 operand is used in
// place; a bf16 one is widened into a scratch buffer, and an output's scratch is rounded back
// (to nearest even) when the staging ends. So a bf16 kernel reads bf16, computes in fp32 and
// rounds each output once, at the point where a GPU kernel would. The scratch is transient
// host memory outside the allocator's tags (a device backend computes on bf16 directly).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/dtype.h"

namespace nupipe::runtime::cpu {

class Staging {
 public:
  Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging();  // rounds the outputs back

  // `n` elements from p; an input is only read.
  const float* in(ConstDevPtr p, int64_t n);
  // `n` elements at p, its current values loaded (kernels accumulate into, or write part of,
  // their outputs); written back when the staging ends. An output staged twice is staged once.
  float* out(DevPtr p, int64_t n);

 private:
  struct Back {
    uint16_t* dst;
    size_t buffer;
    int64_t n;
  };
  // Uninitialised (each is widened into at once): no zeroing pass over large operands.
  std::vector<std::unique_ptr<float[]>> buffers_;
  std::vector<Back> backs_;
};

// Elementwise conversions (OpenMP over the elements).
void widen(float* dst, const uint16_t* src, int64_t n);
void narrow(uint16_t* dst, const float* src, int64_t n);

}  // namespace nupipe::runtime::cpu
