// test_cli_plan.cpp: `nupipe plan` end to end, without mpirun: at a budget where the uniform
// split of tiny.toml on 4 stages does not fit, the planner's split does (and is reported as
// such in the table and the JSON); without a budget or a throughput it claims neither; it
// follows train.recompute and shows the config's split; nothing fitting is exit 2 with the
// shortfall; bad arguments are exit 2.
#include <gtest/gtest.h>

#include <filesystem>

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

// Every schedule side by side, and parallel.schedule = "auto": with room, a zero-bubble schedule
// (shorter simulated step); within a budget only 1F1B fits, 1F1B. The JSON carries every
// schedule's plan.
TEST(CliPlan, EveryScheduleAndAutoChoosesTheFastestThatFits) {
  const std::vector<std::string> eight{"--set", "model.n_layer=8", "--set",
                                       "parallel.schedule=auto", "--set", "parallel.pipeline=2"};
  const ProcessResult roomy = plan(eight);
  ASSERT_EQ(roomy.exit_code, 0) << roomy;
  EXPECT_NE(roomy.output.find("2 stages x 1 replicas, zb-h"), std::string::npos) << roomy;
  for (const char* needle : {"every schedule", "  1f1b ", "  gpipe ", "  zb-h1 ", "  zb-h2 ",
                             "<- fastest", "W inputs"}) {
    EXPECT_NE(roomy.output.find(needle), std::string::npos) << needle << "\n" << roomy;
  }
  std::vector<std::string> tight = eight;
  tight.insert(tight.end(), {"--memory-gib", "0.0085"});  // 1F1B's [4, 4] peak is 7.71 MiB
  const ProcessResult r = plan(tight);
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("2 stages x 1 replicas, 1f1b (parallel.schedule = \"auto\""),
            std::string::npos) << r;
  EXPECT_NE(r.output.find("  zb-h1    no split fits"), std::string::npos) << r;
  tight.push_back("--json");
  const ProcessResult j = plan(tight);
  ASSERT_EQ(j.exit_code, 0) << j;
  const nlohmann::json doc = nlohmann::json::parse(j.output);
  ASSERT_EQ(doc["schedules"].size(), 4u) << j;
  EXPECT_EQ(doc["schedules"][0]["schedule"], "1f1b");
  EXPECT_EQ(doc["schedules"][0]["fits"], true);
  EXPECT_EQ(doc["schedules"][2]["fits"], false);
  EXPECT_TRUE(doc["schedules"][2]["plan"].is_null());
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

// Without a budget nothing "fits"; without a throughput (runtime.tflops' default) there are no
// seconds, tokens/s or MFU, only times in units of one block's forward + backward of one
// microbatch: a middle stage holding one block takes exactly one unit.
TEST(CliPlan, ClaimsOnlyWhatItsInputsSupport) {
  const ProcessResult table = plan({});
  ASSERT_EQ(table.exit_code, 0) << table;
  for (const char* needle : {"memory: no budget given", "time: no device throughput given",
                             ": no budget given", " units (simulated", "--calibrate"}) {
    EXPECT_NE(table.output.find(needle), std::string::npos) << needle << "\n" << table;
  }
  for (const char* absent : {": fits", "does NOT fit", "tokens/s, MFU", " ms"}) {
    EXPECT_EQ(table.output.find(absent), std::string::npos) << absent << "\n" << table;
  }
  const ProcessResult r = plan({"--json"});
  ASSERT_EQ(r.exit_code, 0) << r;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_FALSE(j["budget_given"].get<bool>());
  EXPECT_FALSE(j["throughput_given"].get<bool>());
  EXPECT_TRUE(j["fits"].is_null());
  for (const auto& p : j["plans"]) {
    EXPECT_TRUE(p["fits"].is_null()) << p;
    for (const char* k : {"step_ms", "tokens_per_s", "mfu", "reduce_ms", "optimizer_ms"}) {
      EXPECT_TRUE(p[k].is_null()) << k << " " << p;
    }
    EXPECT_GT(p["step_units"].get<double>(), 0.0);
  }
  const auto& uniform = j["plans"][1];
  ASSERT_EQ(uniform["name"], "uniform");
  EXPECT_NEAR(uniform["stages"][1]["time_units"].get<double>(), 1.0, 1e-12) << uniform;
  EXPECT_NEAR(uniform["stages"][2]["time_units"].get<double>(), 1.0, 1e-12) << uniform;
  // 8 microbatches over 4 equal-ish stages: at least (m + p - 1) x the slowest stage.
  EXPECT_GE(uniform["step_units"].get<double>(),
            11 * uniform["stages"][1]["time_units"].get<double>());
  // Figures that need seconds are refused without a throughput, with the way to give one.
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--p2p-gbps", "10"}, {"--net-gbps", "10"},
        {"--peak-tflops", "100"}, {"--gpu-hour-usd", "2"}}) {
    const ProcessResult refused = plan(extra);
    EXPECT_EQ(refused.exit_code, 2) << extra[0] << "\n" << refused;
    EXPECT_NE(refused.output.find("--tflops"), std::string::npos) << refused;
  }
  // A throughput in the config gives seconds again.
  const ProcessResult given = plan({"--json", "--set", "runtime.tflops=100"});
  ASSERT_EQ(given.exit_code, 0) << given;
  const nlohmann::json g = nlohmann::json::parse(given.output);
  EXPECT_TRUE(g["throughput_given"].get<bool>());
  EXPECT_GT(g["plans"][0]["step_ms"].get<double>(), 0.0);
  EXPECT_GT(g["plans"][0]["tokens_per_s"].get<double>(), 0.0);
  EXPECT_TRUE(g["plans"][0]["step_units"].is_null());
}

// train.recompute is followed (--recompute overrides it), blocks per stage included; the
// config's own split is shown as `nupipe train` would run it.
TEST(CliPlan, FollowsTheConfigsRecomputeAndSplit) {
  auto uniform = [](const std::vector<std::string>& extra) {
    std::vector<std::string> args{"--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult r = plan(args);
    EXPECT_EQ(r.exit_code, 0) << r;
    const nlohmann::json j = nlohmann::json::parse(r.output);
    for (const auto& p : j["plans"]) {
      if (p["name"] == "uniform") return nlohmann::json(p);
    }
    ADD_FAILURE() << "no uniform plan\n" << r;
    return nlohmann::json{};
  };
  const auto none = uniform({});
  const auto full = uniform({"--set", "train.recompute=full"});
  const auto listed = uniform({"--set", "train.recompute=[1,0,0,0]"});
  const auto overridden = uniform({"--set", "train.recompute=full", "--recompute", "none"});
  EXPECT_EQ(none["recompute"], nlohmann::json({0, 0, 0, 0}));
  EXPECT_EQ(full["recompute"], nlohmann::json({1, 1, 1, 1}));
  EXPECT_EQ(listed["recompute"], nlohmann::json({1, 0, 0, 0}));
  EXPECT_EQ(overridden["recompute"], nlohmann::json({0, 0, 0, 0}));
  auto activations = [](const nlohmann::json& p, int s) {
    return p["stages"][s]["bytes"]["activations"].get<int64_t>();
  };
  EXPECT_LT(activations(full, 0), activations(none, 0));
  EXPECT_LT(activations(listed, 0), activations(none, 0));
  EXPECT_EQ(activations(listed, 1), activations(none, 1));

  // tiny.toml as it is: 2 stages split [1, 3].
  const ProcessResult r = run_nupipe({"plan", tiny_config(), "--json"}, source_dir());
  ASSERT_EQ(r.exit_code, 0) << r;
  bool found = false;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  for (const auto& p : j["plans"]) {
    if (p["name"] != "config") continue;
    found = true;
    EXPECT_EQ(p["stage_layers"], nlohmann::json({1, 3})) << p;
  }
  EXPECT_TRUE(found) << r;
  const ProcessResult text = run_nupipe({"plan", tiny_config()}, source_dir());
  EXPECT_NE(text.output.find("recompute \"none\" (train.recompute)"), std::string::npos) << text;
  EXPECT_NE(text.output.find("config: stage_layers [1, 3]"), std::string::npos) << text;
}

// The same at start-up: parallel.stage_layers = "auto" reports its choice in milliseconds only
// with a throughput in the config, else in block units.
TEST(CliPlan, StartUpPlanGivesSecondsOnlyWithAThroughput) {
  TempDir tmp;
  auto note = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args{"train", tiny_config()};
    for (const std::string& s : std::vector<std::string>{"parallel.pipeline=1", "parallel.data=1", "parallel.stage_layers=auto",
          "train.steps=1", "checkpoint.every=0", "runtime.threads=1", "data.val=",
          "run.dir=" + tmp.file("run" + std::to_string(extra.size()))}) {
      args.push_back("--set");
      args.push_back(s);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult r = run_nupipe(args, tmp.path());
    EXPECT_EQ(r.exit_code, 0) << r;
    const size_t at = r.output.find("planner: ");
    return at == std::string::npos ? std::string() : r.output.substr(at, r.output.find('\n', at) - at);
  };
  const std::string relative = note({});
  EXPECT_NE(relative.find("units, 1 unit = one block's forward + backward of a microbatch"),
            std::string::npos)
      << relative;
  EXPECT_EQ(relative.find(" ms"), std::string::npos) << relative;
  const std::string absolute = note({"--set", "runtime.tflops=0.5"});
  EXPECT_NE(absolute.find(" ms at runtime.tflops"), std::string::npos) << absolute;
}

// runtime.calibration: `nupipe train`'s start-up planner times the stages by a saved
// calibration, as `nupipe plan --calibration` does (the same simulated step), and a file timed
// on another shape stops the run at start-up (exit 2) before it trains.
TEST(CliPlan, StartUpPlanFromACalibration) {
  TempDir tmp;
  const std::string file = tmp.file("calibration.json");
  const std::vector<std::string> sets{"parallel.pipeline=1", "parallel.data=1",
                                      "parallel.stage_layers=auto", "runtime.threads=1"};
  auto with_sets = [&](std::vector<std::string> args) {
    for (const std::string& s : sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    return args;
  };
  const ProcessResult planned = run_nupipe(
      with_sets({"plan", tiny_config(), "--calibrate", "--save-calibration", file, "--json"}),
      tmp.path());
  ASSERT_EQ(planned.exit_code, 0) << planned;
  const std::string& o = planned.output;
  const nlohmann::json j =
      nlohmann::json::parse(o.substr(o.find('{'), o.rfind('}') - o.find('{') + 1));
  const double plan_ms = j["plans"][0]["step_ms"].get<double>();
  std::vector<std::string> train = with_sets({"train", tiny_config()});
  for (const std::string& s :
       std::vector<std::string>{"train.steps=1", "checkpoint.every=0", "data.val=",
                                "runtime.calibration=" + file, "run.dir=" + tmp.file("run")}) {
    train.push_back("--set");
    train.push_back(s);
  }
  const ProcessResult r = run_nupipe(train, tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  const size_t at = r.output.find("planner: ");
  ASSERT_NE(at, std::string::npos) << r;
  const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  const size_t step = line.find("simulated step ");
  ASSERT_NE(step, std::string::npos) << line;
  EXPECT_NE(line.find(" ms from runtime.calibration"), std::string::npos) << line;
  EXPECT_NEAR(std::stod(line.substr(step + 15)), plan_ms, 6e-4) << line;

  train.push_back("--set");
  train.push_back("train.micro_batch=1");
  train[train.size() - 3] = "run.dir=" + tmp.file("refused");
  const ProcessResult refused = run_nupipe(train, tmp.path());
  EXPECT_EQ(refused.exit_code, 2) << refused;
  EXPECT_NE(refused.output.find("runtime.calibration " + file +
                                ": timed with micro_batch = 2, this plan has 1"),
            std::string::npos)
      << refused;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("refused") + "/metrics.jsonl"));
}

TEST(CliPlan, CalibrateTimesTheLayersHere) {
  const ProcessResult r = plan({"--calibrate", "--set", "runtime.threads=1"});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("calibrated on this machine's cpu backend"), std::string::npos) << r;
  for (const char* pass : {"a block's forward", "B ", "W ", "the head's forward, loss and backward",
                           "the embedding's forward", "elements/s"}) {
    EXPECT_NE(r.output.find(pass), std::string::npos) << pass << "\n" << r;
  }
  EXPECT_EQ(plan({"--calibrate", "--tflops", "1"}).exit_code, 2);
}

// One calibration serves many plans: --save-calibration writes it, --calibration reads it
// back (the same times, so the same plans), and a file timed on another shape, or not a
// calibration at all, is refused with exit 2 naming why.
TEST(CliPlan, CalibrationIsSavedAndReused) {
  TempDir tmp;
  const std::string dir = tmp.path();
  const std::string file = dir + "/calibration.json";
  const std::vector<std::string> one{"--set", "runtime.threads=1", "--json"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), one.begin(), one.end());
    return plan(extra);
  };
  const ProcessResult timed = with({"--calibrate", "--save-calibration", file});
  ASSERT_EQ(timed.exit_code, 0) << timed;
  const ProcessResult read = with({"--calibration", file});
  ASSERT_EQ(read.exit_code, 0) << read;
  // stdout is the JSON, the calibration line goes to stderr.
  auto plans = [](const ProcessResult& r) {
    const std::string& o = r.output;
    return nlohmann::json::parse(o.substr(o.find('{'), o.rfind('}') - o.find('{') + 1))["plans"];
  };
  EXPECT_EQ(plans(timed), plans(read));
  EXPECT_GT(plans(read)[0]["step_ms"].get<double>(), 0.0);

  const ProcessResult other = with({"--calibration", file, "--set", "train.micro_batch=1"});
  EXPECT_EQ(other.exit_code, 2) << other;
  EXPECT_NE(other.output.find("timed with micro_batch = 2, this plan has 1"), std::string::npos)
      << other;
  write_file(dir + "/bad.json", "{\"format\": \"nupipe-calibration-1\", \"shape\": {}}");
  const ProcessResult bad = with({"--calibration", dir + "/bad.json"});
  EXPECT_EQ(bad.exit_code, 2) << bad;
  EXPECT_NE(bad.output.find("it has no shape.d_model"), std::string::npos) << bad;
  write_file(dir + "/text.json", "not json");
  EXPECT_EQ(with({"--calibration", dir + "/text.json"}).exit_code, 2);
  EXPECT_EQ(with({"--calibration", file, "--calibrate"}).exit_code, 2);
  EXPECT_EQ(with({"--calibration", file, "--set", "runtime.tflops=[1, 1, 2, 2]"}).exit_code, 2);
  EXPECT_EQ(with({"--save-calibration", dir + "/x.json"}).exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.json"));
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
