// elapsed.h: seconds on the steady clock since a time point, the one spelling of it for logs,
// timeouts and measurements.
#pragma once

#include <chrono>

namespace nupipe::runtime {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace nupipe::runtime
