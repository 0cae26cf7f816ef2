// cpu_attention.h: CpuBackend's fused causal attention (cpu_attention.cpp), its block products
// through the backend's GEMMs; layouts and semantics as Backend::attention_forward/backward.
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace nupipe::runtime {
class CpuBackend;
}

namespace nupipe::runtime::cpu {

void attention_forward(CpuBackend& be, DevPtr out, float* lse, ConstDevPtr qkv, int64_t B,
                       int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale);
void attention_backward(CpuBackend& be, DevPtr dqkv, float* delta, ConstDevPtr dout,
                        ConstDevPtr qkv, ConstDevPtr out, const float* lse, int64_t B, int64_t T,
                        int64_t H, int64_t Hkv, int64_t D, float scale);

}  // namespace nupipe::runtime::cpu
