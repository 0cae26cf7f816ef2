// backends.h: the backends the op tests run on, each compared with CpuBackend's fp32 kernels
// or an independent reference. The CUDA backend joins the list when it is built (NUPIPE_CUDA),
// with runs_reference_kernels = false; without a device its tests are reported SKIPPED with
// the reason, never passed.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/cpu_backend.h"
#if defined(NUPIPE_HAVE_CUDA)
#include "runtime/cuda/cuda_backend.h"
#endif

namespace nupipe::runtime::testing {

struct BackendCase {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
  // Widens to fp32 and runs cpu::* itself: every result bitwise, except the products with both
  // operands bf16, which the cpu backend runs through oneDNN's bf16 kernels (tolerance-bound;
  // test_backend_ops.cpp, test_cpu_gemm.cpp).
  bool runs_reference_kernels;
  std::function<std::string()> unavailable = {};  // why it cannot run here ("" or empty: it can)
};

inline std::vector<BackendCase> compiled_backends() {
  std::vector<BackendCase> cases = {
      {"cpu", [] { return std::unique_ptr<Backend>(new CpuBackend); }, true}};
#if defined(NUPIPE_HAVE_CUDA)
  cases.push_back({"cuda", [] { return std::unique_ptr<Backend>(new CudaBackend); }, false, [] {
                     std::string why;
                     return CudaBackend::device_count(&why) > 0 ? std::string()
                                                                : "no CUDA device: " + why;
                   }});
#endif
  return cases;
}
inline void PrintTo(const BackendCase& c, std::ostream* os) { *os << c.name; }

// "" when the case can run here, else the reason to report the test SKIPPED.
inline std::string unavailable_reason(const BackendCase& c) {
  return c.unavailable ? c.unavailable() : std::string();
}

}  // namespace nupipe::runtime::testing
