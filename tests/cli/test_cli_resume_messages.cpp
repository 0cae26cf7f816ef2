// test_cli_resume_messages.cpp: what a relaunch into an existing run says: one line naming
// every changed setting (`key: old -> new`, training settings apart from layout ones), and for
// a finished run "nothing to train" naming the run, its checkpoint and the ways on that exist
// (each tried here); metrics.jsonl's step numbers, timestamps and tokens_seen across a resume
// that changes the batch; the final line's validation or training loss.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

// One process, one thread, no validation set: a few steps take about a second.
std::vector<std::string> base(const std::string& run_dir, std::vector<std::string> more) {
  std::vector<std::string> sets{"run.dir=" + run_dir, "runtime.threads=1", "data.val=",
                                "optim.warmup_steps=0", "run.log_every=1"};
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

// The lines of `text` that contain `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    if (line.find(needle) != std::string::npos) out.push_back(line);
    start = end + 1;
  }
  return out;
}

std::vector<nlohmann::json> records(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  for (const std::string& l : read_lines(run_dir + "/metrics.jsonl")) {
    out.push_back(nlohmann::json::parse(l));
  }
  return out;
}

// A resume with other hyper-parameters and batch shape: one line lists each change with both
// values, the training ones first; tokens_seen counts each step's own batch; steps are
// numbered as the log and the checkpoints number them; the final line is the training loss.
TEST(CliResumeMessages, ChangedSettingsInOneLineAndTokensAcrossTheResume) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult first = run_train(tiny_config(), base(run_dir, {"train.steps=3"}), tmp.path());
  ASSERT_EQ(first.exit_code, 0) << first;
  EXPECT_TRUE(fs::exists(run_dir + "/checkpoints/step_00000003")) << list_dir(run_dir);
  auto recs = records(run_dir);
  ASSERT_EQ(recs.size(), 3u);
  char want[96];
  std::snprintf(want, sizeof(want), "done: 3 steps; final training loss %.4f",
                recs.back()["loss"].get<double>());
  EXPECT_NE(first.output.find(want), std::string::npos) << want << "\n" << first;
  EXPECT_EQ(first.output.find("validation loss"), std::string::npos) << first;

  // global_batch 16 -> 32 (tokens per step 1024 -> 2048), lr, steps; micro_batch (layout).
  const ProcessResult second = run_train(
      tiny_config(),
      base(run_dir, {"train.steps=5", "optim.lr=0.001", "train.global_batch=32",
                     "train.micro_batch=4"}),
      tmp.path());
  ASSERT_EQ(second.exit_code, 0) << second;
  const std::vector<std::string> changed = lines_with(second.output, " -> ");
  ASSERT_EQ(changed.size(), 1u) << "one line for every change\n" << second;
  const std::string& line = changed[0];
  EXPECT_NE(line.find("resuming with changed training settings"), std::string::npos) << line;
  for (const char* change : {"train.steps: 3 -> 5", "train.global_batch: 16 -> 32",
                             "optim.lr: 0.003 -> 0.001", "train.micro_batch: 2 -> 4"}) {
    EXPECT_NE(line.find(change), std::string::npos) << change << "\n" << line;
  }
  // The layout change comes after the training ones, apart.
  EXPECT_LT(line.find("optim.lr"), line.find("layout and run settings: train.micro_batch"))
      << line;

  recs = records(run_dir);
  ASSERT_EQ(recs.size(), 5u) << read_file(run_dir + "/metrics.jsonl");
  const int64_t tokens[] = {1024, 2048, 3072, 5120, 7168};
  std::string previous;
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i]["step"].get<int>(), static_cast<int>(i) + 1) << recs[i];
    EXPECT_EQ(recs[i]["tokens_seen"].get<int64_t>(), tokens[i]) << recs[i];
    const std::string t = recs[i]["timestamp"].get<std::string>();
    EXPECT_TRUE(std::regex_match(t, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"))) << t;
    EXPECT_GE(t, previous) << "timestamps go forward";
    previous = t;
  }
  // The log's step lines and the checkpoint count the same way as the records.
  std::snprintf(want, sizeof(want), "step 5/5 | loss %.4f", recs.back()["loss"].get<double>());
  EXPECT_NE(second.output.find(want), std::string::npos) << want << "\n" << second;
  EXPECT_TRUE(fs::exists(run_dir + "/checkpoints/step_00000005")) << list_dir(run_dir);
  const ProcessResult inspect =
      run_nupipe({"ckpt", "inspect", run_dir + "/checkpoints/step_00000005", "--json"}, tmp.path());
  ASSERT_EQ(inspect.exit_code, 0) << inspect;
  EXPECT_EQ(nlohmann::json::parse(inspect.output)["tokens_seen"].get<int64_t>(), 7168) << inspect;
}

// Layout and run settings only (here a smaller micro_batch, resuming from an older
// checkpoint by path): one neutral line, no claim that the training changed.
TEST(CliResumeMessages, LayoutOnlyChangesAreSaidNeutrally) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult first = run_train(
      tiny_config(), base(run_dir, {"train.steps=4", "checkpoint.every=2"}), tmp.path());
  ASSERT_EQ(first.exit_code, 0) << first;
  const std::string older = run_dir + "/checkpoints/step_00000002";
  ASSERT_TRUE(fs::exists(older)) << list_dir(run_dir + "/checkpoints");
  const ProcessResult second = run_train(
      tiny_config(),
      base(run_dir, {"train.steps=4", "checkpoint.every=2", "train.micro_batch=1",
                     "checkpoint.resume=" + older}),
      tmp.path());
  ASSERT_EQ(second.exit_code, 0) << second;
  const std::vector<std::string> changed = lines_with(second.output, " -> ");
  ASSERT_EQ(changed.size(), 1u) << second;
  EXPECT_NE(changed[0].find("resuming with another layout or run settings (the same training): "),
            std::string::npos)
      << changed[0];
  EXPECT_NE(changed[0].find("train.micro_batch: 2 -> 1"), std::string::npos) << changed[0];
  EXPECT_NE(changed[0].find("checkpoint.resume: \"auto\" -> \"" + older + "\""),
            std::string::npos)
      << changed[0];
  EXPECT_EQ(second.output.find("changed training settings"), std::string::npos) << second;
}

// A finished run relaunched: exit 0, nothing in run.dir touched, and the line names the run
// and its checkpoint and the ways on; each of them works as said, and checkpoint.resume =
// "never" (not offered) is refused in that directory.
TEST(CliResumeMessages, NothingToTrainNamesTheRunAndTheWaysOn) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult first = run_train(tiny_config(), base(run_dir, {"train.steps=2"}), tmp.path());
  ASSERT_EQ(first.exit_code, 0) << first;
  const std::string metrics = read_file(run_dir + "/metrics.jsonl");
  const std::string config = read_file(run_dir + "/config.toml");
  const std::string log = read_file(run_dir + "/train.log");

  // Even with other settings: nothing is trained, so nothing is said about them.
  const ProcessResult again =
      run_train(tiny_config(), base(run_dir, {"train.steps=2", "optim.lr=0.001"}), tmp.path());
  ASSERT_EQ(again.exit_code, 0) << again;
  const std::string want = "done: nothing to train: run.dir " + run_dir +
                           " already holds step 2 of 2 (checkpoint " + run_dir +
                           "/checkpoints/step_00000002); to continue it, raise train.steps "
                           "(--set train.steps=M with M > 2); to start a new run, give it a "
                           "run.dir of its own (--set run.dir=DIR)";
  EXPECT_NE(again.output.find(want), std::string::npos) << want << "\n" << again;
  EXPECT_EQ(again.output.find(" -> "), std::string::npos) << again;
  EXPECT_EQ(again.output.find("step 1/"), std::string::npos) << "it trained\n" << again;
  EXPECT_EQ(read_file(run_dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(read_file(run_dir + "/config.toml"), config) << "config.toml was overwritten";
  EXPECT_EQ(read_file(run_dir + "/train.log"), log) << "train.log was written";

  // Beyond train.steps: said so.
  const ProcessResult fewer = run_train(tiny_config(), base(run_dir, {"train.steps=1"}), tmp.path());
  ASSERT_EQ(fewer.exit_code, 0) << fewer;
  EXPECT_NE(fewer.output.find("already holds step 2, beyond train.steps = 1"), std::string::npos)
      << fewer;

  // The ways on. checkpoint.resume = "never" is not one: it refuses a run.dir with checkpoints.
  const ProcessResult never = run_train(
      tiny_config(), base(run_dir, {"train.steps=2", "checkpoint.resume=never"}), tmp.path());
  EXPECT_EQ(never.exit_code, 2) << never;
  const ProcessResult more = run_train(tiny_config(), base(run_dir, {"train.steps=3"}), tmp.path());
  ASSERT_EQ(more.exit_code, 0) << more;
  EXPECT_NE(more.output.find("step 3/3"), std::string::npos) << more;
  EXPECT_EQ(more.output.find("step 1/3"), std::string::npos) << more;
  const std::string fresh_dir = tmp.file("fresh");
  const ProcessResult fresh =
      run_train(tiny_config(), base(fresh_dir, {"train.steps=2"}), tmp.path());
  ASSERT_EQ(fresh.exit_code, 0) << fresh;
  EXPECT_NE(fresh.output.find("starting from step 0"), std::string::npos) << fresh;

  // With a checkpoint.dir of its own, that is the directory named, and the one to change.
  const std::string ckpt_dir = tmp.file("ckpts");
  const auto own = [&](const std::string& dir) {
    return base(dir, {"train.steps=1", "checkpoint.dir=" + ckpt_dir});
  };
  ASSERT_EQ(run_train(tiny_config(), own(tmp.file("a")), tmp.path()).exit_code, 0);
  const ProcessResult other_dir = run_train(tiny_config(), own(tmp.file("b")), tmp.path());
  ASSERT_EQ(other_dir.exit_code, 0) << other_dir;
  EXPECT_NE(other_dir.output.find("nothing to train: checkpoint.dir " + ckpt_dir +
                                  " already holds step 1 of 1"),
            std::string::npos)
      << other_dir;
  EXPECT_NE(other_dir.output.find("--set checkpoint.dir=DIR --set run.dir=DIR"),
            std::string::npos)
      << other_dir;
}

}  // namespace
}  // namespace nupipe::cli_test
