// test_cli_plan.cpp: `nupipe plan` end to end, without mpirun: at a budget where the uniform
// split of tiny.toml on 4 stages does not fit, the planner's split does (and is reported as
// such in the table and the JSON); nothing fitting is exit 2 with the shortfall; bad
// arguments are exit 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/cli/cli_process.h"

namespace nupipe::cli_test {
namespace {

const std::vector<std::string> kFourStages{"--set", "parallel.pipeline=4", "--set",
                                           "parallel.data=1", "--set",
                                           "parallel.stage_layers=uniform",
                                           // the budgets below are sized for the unfused
                                           // attention's activations
                                           "--set", "runtime.attention=unfused"};

ProcessResult plan(std::vector<std::string> extra) {
  std::vector<std::string> args{"plan", tiny_config()};
  args.insert(args.end(), kFourStages.begin(), kFourStages.end());
  args.insert(args.end(), extra.begin(), extra.end());
  return run_nupipe(args, source_dir());
}

TEST(CliPlan, AutoFitsWhereUniformDoesNot) {
  // 3.5 MiB per rank: stage 0 of the uniform split needs 3.99 MiB.
  const ProcessResult r = plan({"--memory-gib", "0.0036", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["plans"].size(), 2u) << r.output;
  const auto& best = j["plans"][0];
  const auto& uniform = j["plans"][1];
  EXPECT_EQ(best["name"], "auto");
  EXPECT_TRUE(best["fits"].get<bool>());
  EXPECT_EQ(uniform["name"], "uniform");
  EXPECT_FALSE(uniform["fits"].get<bool>());
  const int64_t budget = static_cast<int64_t>(0.0036 * (1ull << 30));
  EXPECT_LE(best["peak_bytes"].get<int64_t>(), budget);
  EXPECT_GT(uniform["peak_bytes"].get<int64_t>(), budget);
  int layers = 0;
  for (const auto& s : best["stages"]) {
    layers += s["layers"].get<int>();
    const auto& b = s["bytes"];
    EXPECT_EQ(s["peak_bytes"].get<int64_t>(),
              b["params"].get<int64_t>() + b["grads"].get<int64_t>() +
                  b["optimizer"].get<int64_t>() + b["activations"].get<int64_t>() +
                  b["workspace"].get<int64_t>() + b["loss_workspace"].get<int64_t>());
  }
  EXPECT_EQ(layers, 4);
  EXPECT_NE(best["stage_layers"], uniform["stage_layers"]);
}

// `nupipe plan` plans the model that runs: runtime.precision and runtime.attention change its
// memory as they change the trainer's. The uniform split's stage 0, per tag.
TEST(CliPlan, FollowsPrecisionAndAttention) {
  auto stage0 = [](const std::vector<std::string>& sets) {
    std::vector<std::string> args{"--memory-gib", "1", "--json"};
    for (const auto& s : sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    const ProcessResult r = plan(args);
    EXPECT_EQ(r.exit_code, 0) << r;
    const nlohmann::json j = nlohmann::json::parse(r.output);
    for (const auto& p : j["plans"]) {
      if (p["name"] == "uniform") return nlohmann::json(p["stages"][0]["bytes"]);
    }
    ADD_FAILURE() << "no uniform plan\n" << r;
    return nlohmann::json{};
  };
  const auto unfused = stage0({"runtime.attention=unfused"});
  const auto fused = stage0({"runtime.attention=fused"});
  const auto bf16 = stage0({"runtime.attention=fused", "runtime.precision=bf16"});
  EXPECT_LT(fused["activations"].get<int64_t>(), unfused["activations"].get<int64_t>());
  EXPECT_EQ(fused["params"], unfused["params"]);
  EXPECT_EQ(bf16["params"].get<int64_t>() * 2, fused["params"].get<int64_t>());
  EXPECT_LT(bf16["activations"].get<int64_t>(), fused["activations"].get<int64_t>());
}

TEST(CliPlan, TableAndCompare) {
  const ProcessResult r = plan({"--memory-gib", "0.0036", "--compare", "1,1,1,1"});
  ASSERT_EQ(r.exit_code, 0) << r;
  for (const char* needle : {"auto: stage_layers", "uniform: stage_layers [1, 1, 1, 1]",
                             "compare: stage_layers [1, 1, 1, 1]", "over budget", ": fits",
                             "does NOT fit", "bubble"}) {
    EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r;
  }
}

// The simulator's network and the throughput figures: a slower network makes the step longer;
// MFU and the cost per million tokens follow from the step time.
TEST(CliPlan, NetworkMfuAndCost) {
  const ProcessResult free_net = plan({"--json", "--tflops", "1"});
  const ProcessResult slow_net = plan({"--json", "--tflops", "1", "--p2p-gbps", "0.01",
                                       "--gpu-hour-usd", "2", "--peak-tflops", "2"});
  ASSERT_EQ(free_net.exit_code, 0) << free_net;
  ASSERT_EQ(slow_net.exit_code, 0) << slow_net;
  const auto a = nlohmann::json::parse(free_net.output)["plans"][0];
  const auto b = nlohmann::json::parse(slow_net.output)["plans"][0];
  EXPECT_GT(b["step_ms"].get<double>(), a["step_ms"].get<double>());
  EXPECT_GT(a["mfu"].get<double>(), 0.0);
  EXPECT_LE(a["mfu"].get<double>(), 1.0);
  EXPECT_TRUE(a["usd_per_million_tokens"].is_null());
  // $2/h x 4 devices x step / (tokens per step / 1e6)
  const double tokens = 2.0 * 64 * 8;  // micro_batch 2, seq 64, 8 microbatches, 1 replica
  EXPECT_NEAR(b["usd_per_million_tokens"].get<double>(),
              2.0 * 4 * b["step_ms"].get<double>() / 1e3 / 3600.0 / (tokens / 1e6), 1e-9);
}

TEST(CliPlan, CalibrateTimesTheLayersHere) {
  const ProcessResult r = plan({"--calibrate", "--set", "runtime.threads=1"});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("calibrated on this machine's cpu backend"), std::string::npos) << r;
  EXPECT_NE(r.output.find("GFLOP/s"), std::string::npos) << r;
  EXPECT_EQ(plan({"--calibrate", "--tflops", "1"}).exit_code, 2);
}

TEST(CliPlan, NothingFitsSaysByHowMuch) {
  const ProcessResult r = plan({"--memory-gib", "0.001"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("nothing fits"), std::string::npos) << r;
  EXPECT_NE(r.output.find("over its budget"), std::string::npos) << r;
  EXPECT_NE(r.output.find("--recompute auto"), std::string::npos) << r;
}

TEST(CliPlan, BadArgumentsAreUsageErrors) {
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--memory-gib", "abc"}, {"--memory-gib", "1,2"},
        {"--compare", "1,1,1"}, {"--compare", "4,0,0,0"}, {"--recompute", "some"},
        {"--world-size", "100"}}) {
    const ProcessResult r = plan(extra);
    EXPECT_EQ(r.exit_code, 2) << extra[0] << " " << extra[1] << "\n" << r;
  }
}

}  // namespace
}  // namespace nupipe::cli_test
