// cuda_build_info.cu: the architectures this build carries device code for, as nvcc saw them
// (__CUDA_ARCH_LIST__), for `nupipe --version`.
#include <string>

#include "runtime/cuda/cuda_backend.h"

namespace nupipe::runtime {

namespace {
#define NUPIPE_STR_(...) #__VA_ARGS__
#define NUPIPE_STR(...) NUPIPE_STR_(__VA_ARGS__)
#if defined(__CUDA_ARCH_LIST__)
constexpr const char* kArchList = NUPIPE_STR(__CUDA_ARCH_LIST__);  // "800,900"
#else
constexpr const char* kArchList = "";
#endif
}  // namespace

std::string CudaBackend::build_info() {
  std::string out, num;
  auto flush = [&] {
    if (num.size() >= 2) {  // 800 -> sm_80, 900 -> sm_90, 1000 -> sm_100
      out += (out.empty() ? "" : ", ") + std::string("sm_") + num.substr(0, num.size() - 1);
    }
    num.clear();
  };
  for (const char* p = kArchList; *p; ++p) {
    if (*p >= '0' && *p <= '9') {
      num += *p;
    } else {
      flush();
    }
  }
  flush();
  return out.empty() ? "cuda" : "cuda (" + out + ")";
}

}  // namespace nupipe::runtime
