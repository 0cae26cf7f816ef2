// test_cli_multirank.cpp: end-to-end tests of `mpirun -np N nupipe train` on the pp x dp grid:
// refusals (world size, stage split, batch arithmetic, bad data) stop every rank with the same
// exit code, one message and nothing written; a 4-rank run writes metrics and a merged trace.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.h"
#include "runtime/data/token_file.h"

namespace nupipe::cli_test {
namespace {

// Open MPI refuses root and more ranks than cores without these; other MPIs ignore them.
const std::map<std::string, std::string> kMpiEnv{{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                                  {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
                                                  {"OMPI_MCA_rmaps_base_oversubscribe", "1"}};

// Every run is small: tiny.toml on one thread per rank, 2 cores shared by up to 4 ranks.
std::vector<std::string> train_args(const std::vector<std::string>& sets) {
  std::vector<std::string> args{"train", tiny_config(), "--set", "runtime.threads=1"};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  return args;
}

// The layout keys (and `more`), all set explicitly: the tests do not depend on tiny.toml's.
std::vector<std::string> layout(int pipeline, int data, const std::string& stage_layers,
                                std::vector<std::string> more = {}) {
  std::vector<std::string> sets{"parallel.pipeline=" + std::to_string(pipeline),
                                "parallel.data=" + std::to_string(data),
                                "parallel.stage_layers=" + stage_layers,
                                "parallel.schedule=1f1b"};
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

// `mpirun -np NP nupipe train tiny.toml --set ...`, as a user runs it (mpirun stops the job
// at the first rank that exits non-zero and returns that rank's exit code).
ProcessResult mpirun_train(int np, const std::vector<std::string>& sets, const std::string& cwd,
                           double timeout_s = 60.0) {
  std::vector<std::string> argv{find_in_path("mpirun"), "--oversubscribe", "-np",
                                std::to_string(np), nupipe_bin()};
  for (const auto& a : train_args(sets)) argv.push_back(a);
  return run_process(argv, cwd, timeout_s, kMpiEnv);
}

// The same launch, but mpirun lets every rank run to its own end (no abort at the first
// non-zero exit) and each rank's exit code is recorded through a shell wrapper: this checks
// that every rank stops by itself, with the same code, and that no other rank prints the
// message. A rank that hangs makes the run time out.
struct PerRank {
  ProcessResult result;
  std::map<int, int> codes;  // rank -> exit code
};

PerRank mpirun_train_per_rank(int np, const std::vector<std::string>& sets,
                              const TempDir& tmp, double timeout_s = 60.0) {
  const std::string codes_dir = tmp.file("rank_codes");
  fs::create_directories(codes_dir);
  const std::string wrapper =
      "\"$0\" \"$@\"; rc=$?; echo $rc > '" + codes_dir +
      "'/rc.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${PMI_RANK:-x}}}; exit $rc";
  std::vector<std::string> argv{find_in_path("mpirun"), "--oversubscribe", "-np",
                                std::to_string(np), "/bin/sh", "-c", wrapper, nupipe_bin()};
  for (const auto& a : train_args(sets)) argv.push_back(a);
  auto env = kMpiEnv;
  env["OMPI_MCA_orte_abort_on_non_zero_status"] = "0";
  PerRank out;
  out.result = run_process(argv, tmp.path(), timeout_s, env);
  for (const auto& entry : fs::directory_iterator(codes_dir)) {
    const std::string name = entry.path().filename().string();  // rc.RANK
    const std::string text = read_file(entry.path().string());
    try {
      out.codes[std::stoi(name.substr(3))] = std::stoi(text);
    } catch (const std::exception&) {
      ADD_FAILURE() << "unreadable rank exit code file " << name << ": '" << text << "'";
    }
  }
  return out;
}

// The checks every refused launch shares, run under both launches: the message
// (each of `expected` present; `once` exactly one time: rank 0 speaks for all), no internal
// error, no training, and run.dir never created.
void expect_refused(const ProcessResult& r, const std::string& run_dir,
                    const std::string& once, const std::vector<std::string>& expected) {
  ASSERT_FALSE(r.timed_out) << "a rank hung\n" << r;
  EXPECT_EQ(count_occurrences(r.output, once), 1)
      << "'" << once << "' should be reported exactly once (by rank 0)\n" << r;
  EXPECT_EQ(count_occurrences(r.output, "HINT:"), 1) << "one HINT expected\n" << r;
  for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << e << "\n" << r;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("step 1/"), std::string::npos) << "it trained anyway\n" << r;
  EXPECT_FALSE(fs::exists(run_dir)) << "a refused run created run.dir; it holds:\n"
                                    << list_dir(run_dir);
}

// Runs the refused launch both ways and checks mpirun's code and every rank's code.
void expect_refused_by_every_rank(int np, const std::vector<std::string>& sets, int code,
                                  const std::string& once,
                                  const std::vector<std::string>& expected) {
  ASSERT_FALSE(find_in_path("mpirun").empty())
      << "mpirun is not in PATH: scripts/setup.sh installs Open MPI";
  {
    TempDir tmp;
    const std::string run_dir = tmp.file("run");
    std::vector<std::string> all = sets;
    all.push_back("run.dir=" + run_dir);
    const ProcessResult r = mpirun_train(np, all, tmp.path());
    EXPECT_EQ(r.exit_code, code) << r;
    expect_refused(r, run_dir, once, expected);
  }
  {
    TempDir tmp;
    const std::string run_dir = tmp.file("run");
    std::vector<std::string> all = sets;
    all.push_back("run.dir=" + run_dir);
    const PerRank p = mpirun_train_per_rank(np, all, tmp);
    std::map<int, int> want;
    for (int rank = 0; rank < np; ++rank) want[rank] = code;
    EXPECT_EQ(p.codes, want) << "every rank must exit with " << code << " by itself\n"
                             << p.result;
    expect_refused(p.result, run_dir, once, expected);
  }
}

// ---------------------------------------------------------------------------------------
// 1. Refusals before anything is written (exit 2: config; exit 3: data)

TEST(CliMultiRank2, WorldSizeNotPipelineTimesDataIsRefused) {
  expect_refused_by_every_rank(2, layout(2, 2, "[1,3]"), 2,
                               "2 x 2 = 4", {"2 ranks", "parallel.pipeline", "parallel.data"});
}

TEST(CliMultiRank2, StageLayersWithWrongLengthIsRefused) {
  expect_refused_by_every_rank(2, layout(2, 1, "[1,1,2]"), 2,
                               "parallel.stage_layers = [1, 1, 2] has 3 entries",
                               {"parallel.pipeline = 2"});
}

TEST(CliMultiRank2, StageLayersWithWrongSumIsRefused) {
  expect_refused_by_every_rank(
      2, layout(2, 1, "[1,2]", {"model.n_layer=4"}), 2,
      "parallel.stage_layers = [1, 2] sums to 3", {"model.n_layer = 4"});
}

TEST(CliMultiRank2, GlobalBatchNotDivisibleOverReplicasIsRefused) {
  expect_refused_by_every_rank(2,
                               layout(1, 2, "uniform",
                                      {"train.global_batch=10", "train.micro_batch=4"}),
                               2, "train.global_batch = 10 is not a multiple",
                               {"parallel.data", "4 x 2"});
}

TEST(CliMultiRank2, TruncatedTokenFileStopsEveryRankWithExit3) {
  TempDir data_dir;
  const std::string f = data_dir.file("truncated.bin");
  std::vector<uint16_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 200);
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  fs::resize_file(f, fs::file_size(f) - 10);  // the last 5 tokens are gone
  expect_refused_by_every_rank(
      4, layout(2, 2, "[1,3]", {"data.train=" + f, "data.val="}), 3,
      "header says 1000 tokens", {f, "truncated"});
}

// ---------------------------------------------------------------------------------------
// 2. A 4-rank run (pipeline 2 x data 2, split [1, 3]) writes metrics and one merged trace

// 6 steps of 2 micro-batches of 2 sequences on each of 2 replicas; ~1 s on 2 cores.
constexpr int kSteps = 6, kMicro = 2;

TEST(CliMultiRank2, FourRanksTrainAndWriteOneMergedTrace) {
  ASSERT_FALSE(find_in_path("mpirun").empty())
      << "mpirun is not in PATH: scripts/setup.sh installs Open MPI";
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult r = mpirun_train(
      4,
      layout(2, 2, "[1,3]",
             {"train.micro_batch=2", "train.global_batch=8",
              "train.steps=" + std::to_string(kSteps), "train.val_batches=2",
              "optim.warmup_steps=1", "run.trace=true", "run.log_every=1",
              "run.dir=" + run_dir}),
      tmp.path(), /*timeout_s=*/90.0);
  ASSERT_FALSE(r.timed_out) << r;
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(count_occurrences(r.output, "step 1/" + std::to_string(kSteps) + " "), 1)
      << "rank 0 alone reports progress\n" << r;
  // runtime.comm = "auto" on the cpu backend: MPI on host memory, said at start-up.
  EXPECT_EQ(count_occurrences(r.output, "collectives: mpi (the cpu backend"), 1) << r;

  // metrics.jsonl: one record per step (log_every 1), each with a bubble in [0, 1] and not 0
  // (a 2-stage pipeline always waits somewhere).
  const auto lines = read_lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), static_cast<size_t>(kSteps)) << list_dir(run_dir) << r;
  for (size_t i = 0; i < lines.size(); ++i) {
    nlohmann::json rec;
    ASSERT_NO_THROW(rec = nlohmann::json::parse(lines[i])) << lines[i];
    EXPECT_EQ(rec.value("step", -1), static_cast<int>(i) + 1) << lines[i];
    ASSERT_TRUE(rec.contains("bubble_fraction") && rec["bubble_fraction"].is_number())
        << lines[i];
    const double bubble = rec["bubble_fraction"].get<double>();
    EXPECT_GT(bubble, 0.0) << lines[i];
    EXPECT_LE(bubble, 1.0) << lines[i];
    ASSERT_TRUE(rec.contains("loss") && rec["loss"].is_number()) << lines[i];
    EXPECT_TRUE(std::isfinite(rec["loss"].get<double>())) << lines[i];
  }

  // trace.json: one Chrome trace, the per-rank parts merged and removed.
  for (const auto& entry : fs::directory_iterator(run_dir)) {
    const std::string name = entry.path().filename().string();
    EXPECT_EQ(name.rfind("trace.json.rank", 0), std::string::npos)
        << "leftover trace part " << name << "\n" << list_dir(run_dir);
  }
  ASSERT_TRUE(fs::exists(run_dir + "/trace.json")) << list_dir(run_dir);
  nlohmann::json trace;
  ASSERT_NO_THROW(trace = nlohmann::json::parse(read_file(run_dir + "/trace.json")));
  ASSERT_TRUE(trace.is_object() && trace.contains("traceEvents") &&
              trace["traceEvents"].is_array())
      << trace.dump().substr(0, 500);

  std::set<int> named_pids;
  std::map<int, std::map<std::string, int>> spans;  // pid -> name -> count of "X" events
  // (pid, step, microbatch) -> [start, end] of forward / backward spans, for causality.
  std::map<std::tuple<int, int, int>, std::pair<double, double>> fwd, bwd;
  for (const auto& e : trace["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph") && e.contains("pid") && e.contains("name")) << e.dump();
    const int pid = e["pid"].get<int>();
    const std::string name = e["name"].get<std::string>(), ph = e["ph"].get<std::string>();
    EXPECT_TRUE(pid >= 0 && pid < 4) << e.dump();
    if (ph == "M" && name == "process_name") {
      EXPECT_TRUE(named_pids.insert(pid).second) << "pid " << pid << " named twice";
      EXPECT_NE(e["args"]["name"].get<std::string>().find("rank " + std::to_string(pid)),
                std::string::npos)
          << e.dump();
    }
    if (ph != "X") continue;
    ++spans[pid][name];
    ASSERT_TRUE(e["ts"].is_number() && e["dur"].is_number()) << e.dump();
    const double ts = e["ts"].get<double>(), dur = e["dur"].get<double>();
    EXPECT_GE(ts, 0.0) << e.dump();
    EXPECT_GE(dur, 0.0) << e.dump();
    const int step = e["args"]["step"].get<int>();  // counted from 1, as the log does
    EXPECT_TRUE(step >= 1 && step <= kSteps) << e.dump();
    if ((name == "forward" || name == "backward") && e["args"].contains("microbatch")) {
      auto& m = name == "forward" ? fwd : bwd;
      m[{pid, step, e["args"]["microbatch"].get<int>()}] = {ts, ts + dur};
    }
  }
  EXPECT_EQ(named_pids, (std::set<int>{0, 1, 2, 3}));
  // Every rank computes its stage for every micro-batch of every step; with 2 stages every
  // rank is on a pipeline and sends and receives; every rank all-reduces and steps.
  for (int pid = 0; pid < 4; ++pid) {
    const auto& s = spans[pid];
    auto count = [&](const char* n) { return s.count(n) ? s.at(n) : 0; };
    EXPECT_EQ(count("forward"), kSteps * kMicro) << "pid " << pid;
    EXPECT_EQ(count("backward"), kSteps * kMicro) << "pid " << pid;
    EXPECT_GE(count("send"), kSteps * kMicro) << "pid " << pid;
    EXPECT_GE(count("recv"), kSteps * kMicro) << "pid " << pid;
    EXPECT_EQ(count("all-reduce"), kSteps) << "pid " << pid;
    EXPECT_EQ(count("optimizer"), kSteps) << "pid " << pid;
  }

  // One time axis: stage 1 (ranks 2, 3) cannot start a micro-batch's forward before stage 0
  // (ranks 0, 1, same replica) finished it, nor stage 0 its backward before stage 1 did. On one
  // host every rank takes rank 0's clock reading as its origin (align_trace_clocks), so this
  // holds exactly; 1 ms covers the rounding of the JSON timestamps. (Origins taken at each
  // rank's own barrier exit were off by 2-7 ms here, and by over 30 ms on a loaded machine.)
  constexpr double kSlackUs = 1e3;
  int checked = 0;
  for (int replica = 0; replica < 2; ++replica) {
    const int first = replica, last = 2 + replica;
    for (int step = 1; step <= kSteps; ++step) {  // counted from 1, as the log does
      for (int mb = 0; mb < kMicro; ++mb) {
        const auto f0 = fwd.find({first, step, mb}), f1 = fwd.find({last, step, mb});
        const auto b0 = bwd.find({first, step, mb}), b1 = bwd.find({last, step, mb});
        if (f0 == fwd.end() || f1 == fwd.end() || b0 == bwd.end() || b1 == bwd.end()) continue;
        ++checked;
        EXPECT_GE(f1->second.first, f0->second.second - kSlackUs)
            << "forward of step " << step << " mb " << mb << " on rank " << last
            << " starts before rank " << first << " finished it";
        EXPECT_GE(b0->second.first, b1->second.second - kSlackUs)
            << "backward of step " << step << " mb " << mb << " on rank " << first
            << " starts before rank " << last << " finished it";
      }
    }
  }
  EXPECT_EQ(checked, 2 * kSteps * kMicro) << "forward/backward spans lack step/microbatch args";
}

// Validation covers the same train.val_batches micro-batches on every layout: pp2 x dp2 with
// ZeRO-1 reports the single rank's validation loss (to the summation-order noise of the data
// sums, which the training losses share), also with a count that the replicas cannot split
// evenly.
TEST(CliMultiRank2, ValidationLossIsTheSameOnEveryLayout) {
  ASSERT_FALSE(find_in_path("mpirun").empty())
      << "mpirun is not in PATH: scripts/setup.sh installs Open MPI";
  TempDir tmp;
  auto val_loss = [&](int np, const std::vector<std::string>& sets) {
    const std::string dir = tmp.file("run" + std::to_string(np));
    std::vector<std::string> all = sets;
    for (const char* s : {"train.steps=2", "train.val_every=2", "train.val_batches=3",
                          "optim.warmup_steps=1", "checkpoint.every=0"}) {
      all.push_back(s);
    }
    all.push_back("run.dir=" + dir);
    const ProcessResult r = mpirun_train(np, all, tmp.path(), /*timeout_s=*/90.0);
    EXPECT_EQ(r.exit_code, 0) << r;
    const auto lines = read_lines(dir + "/metrics.jsonl");
    if (lines.empty()) return -1.0;
    return nlohmann::json::parse(lines.back()).value("val_loss", -1.0);
  };
  const double one = val_loss(1, layout(1, 1, "\"uniform\""));
  const double grid = val_loss(4, layout(2, 2, "[1,3]", {"parallel.zero=1"}));
  ASSERT_GT(one, 0.0);
  EXPECT_NEAR(grid, one, 1e-6 * one);
}

}  // namespace
}  // namespace nupipe::cli_test
