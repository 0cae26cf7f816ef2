// test_config_devices.cpp: [[runtime.devices]], the devices of a heterogeneous pipeline, resolved
// at load into per-stage runtime.memory_gib and runtime.tflops, and its refusals, named at the
// table or key that is wrong.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launcher/config.h"
#include "runtime/error.h"

namespace nupipe::launcher {
namespace {

constexpr const char* kMixed =
    "[parallel]\npipeline = 4\n\n"
    "[[runtime.devices]]\nname = \"H100\"\nstages = 2\nmemory_gib = 80\ntflops = 400\n\n"
    "[[runtime.devices]]\nmemory_gib = 40\ntflops = 200.5\n\n"
    "[[runtime.devices]]\nmemory_gib = 24\n";

std::string error_text(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "test.toml", overrides);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage) << e.what();
    EXPECT_NE(e.hint().find("[[runtime.devices]]"), std::string::npos) << e.hint();
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return {};
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(ConfigDevices, ExpandIntoPerStageLists) {
  const Config c = parse_config(kMixed, "test.toml");
  EXPECT_EQ(c.runtime.memory_gib, (std::vector<double>{80, 80, 40, 24}));
  EXPECT_EQ(c.runtime.tflops, (std::vector<double>{400, 400, 200.5, 1.0}));  // tflops default 1
  // The effective config holds the resolved lists, and reads back to the same.
  const Config again = parse_config(to_toml(c), "effective.toml");
  EXPECT_EQ(again.runtime.memory_gib, c.runtime.memory_gib);
  EXPECT_EQ(again.runtime.tflops, c.runtime.tflops);
  // An override of the pipeline is what the list must cover.
  EXPECT_CONTAINS(error_text(kMixed, {"parallel.pipeline=3"}),
                  "runtime.devices covers 4 stages (the sum of their `stages`), parallel.pipeline is 3");
}

TEST(ConfigDevices, RefusalsNamed) {
  const std::string head = "[parallel]\npipeline = 2\n";
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 1\nmemory = 80\n"),
                  "test.toml:5:10: unknown key 'runtime.devices[0].memory'");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 0\n"),
                  "runtime.devices[0].stages must be an integer >= 1");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 2\ntflops = 0\n"),
                  "runtime.devices[0].tflops must be > 0");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 2\nmemory_gib = -1\n"),
                  "runtime.devices[0].memory_gib must be >= 0");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 2\nmemory_gib = \"80\"\n"),
                  "runtime.devices[0].memory_gib must be a number");
  EXPECT_CONTAINS(error_text(head + "[runtime]\ndevices = 3\n"),
                  "test.toml:4:11: runtime.devices must be a non-empty list of tables");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nmemory_gib = 8\n"),
                  "runtime.devices covers 1 stages");
  EXPECT_CONTAINS(error_text(head + "[runtime]\nmemory_gib = 8\n[[runtime.devices]]\nstages = 2\n"),
                  "runtime.memory_gib and runtime.devices both give");
  EXPECT_CONTAINS(error_text(head + "[[runtime.devices]]\nstages = 2\n", {"runtime.tflops=5"}),
                  "runtime.tflops and runtime.devices both give");
}

}  // namespace
}  // namespace nupipe::launcher
