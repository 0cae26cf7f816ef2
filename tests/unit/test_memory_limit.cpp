// test_memory_limit.cpp: the backend's memory limit refuses an allocation that would exceed
// it, before taking any memory, with a message naming the owner, the tag and the bytes held.
#include <gtest/gtest.h>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace nupipe::runtime {
namespace {

TEST(MemoryLimit, RefusesWhatWouldExceedItNamingTagAndHolder) {
  CpuBackend be;
  Tensor params = Tensor::zeros(be, {1024}, DType::f32, MemTag::params);  // 4 KiB, before
  be.set_memory_limit(16 * 1024, "stage 2 (rank 5)");
  Tensor a = Tensor::empty(be, {2048}, DType::f32, MemTag::activations);  // 8 KiB: 12 held
  Tensor b = Tensor::empty(be, {1024}, DType::f32, MemTag::workspace);    // exactly 16 KiB
  EXPECT_EQ(be.memory().current_total(), 16 * 1024);
  try {
    Tensor c = Tensor::empty(be, {1}, DType::f32, MemTag::workspace);
    FAIL() << "an allocation over the limit was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    const std::string what = e.what();
    for (const char* part : {"stage 2 (rank 5)", "4 B more workspace", "16.00 KiB held",
                             "params 4.00 KiB", "activations 8.00 KiB", "workspace 4.00 KiB",
                             "exceeds 16.00 KiB"}) {
      EXPECT_NE(what.find(part), std::string::npos) << "missing '" << part << "' in: " << what;
    }
    EXPECT_NE(e.hint().find("runtime.memory_gib"), std::string::npos);
  }
  EXPECT_EQ(be.memory().current_total(), 16 * 1024) << "a refused allocation took memory";
  b = {};
  Tensor d = Tensor::empty(be, {1024}, DType::f32, MemTag::workspace);  // fits again once freed
  be.set_memory_limit(0, "");
  Tensor e = Tensor::empty(be, {1 << 20}, DType::f32, MemTag::workspace);  // no limit
  EXPECT_GT(be.memory().current_total(), 16 * 1024);
}

}  // namespace
}  // namespace nupipe::runtime
