// test_cli_checkpoint_messages.cpp: what `nupipe` says about checkpoint paths and retention:
// a missing or mistyped checkpoint (checkpoint.resume, ckpt verify|inspect), a directory of
// checkpoints or a run directory given for one (exit 4, never "damaged"), milestones
// (checkpoint.keep_every) that retention keeps and the resume from one of them, the config
// rules of keep_every (exit 2), and the hint for a text file passed as tokens (exit 3).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

const std::map<std::string, std::string> kMpiEnv{{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                                 {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}};

std::vector<std::string> steps_in(const std::string& checkpoints) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(checkpoints)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The messages of a path that is not a checkpoint: exit 4, the words wanted, and never the
// words of a damaged checkpoint.
void expect_not_a_checkpoint(const ProcessResult& r, const std::vector<std::string>& wanted) {
  EXPECT_EQ(r.exit_code, 4) << r;
  for (const auto& w : wanted) EXPECT_NE(r.output.find(w), std::string::npos) << w << "\n" << r;
  EXPECT_EQ(r.output.find("damaged"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("never committed"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r;
  EXPECT_EQ(count_occurrences(r.output, "HINT:"), 1) << r;
}

// A run of 10 steps saving every 2 with keep = 1 and keep_every = 4: retention keeps the
// milestones 4 and 8 and the newest, 10; the log says which saves are milestones. Then every
// way of naming a checkpoint wrongly, and the runbook's resume from a milestone.
TEST(CliCheckpointMessages, MilestonesAndPathsThatAreNotCheckpoints) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const std::string ckpts = run_dir + "/checkpoints";
  const std::vector<std::string> base{"runtime.threads=1", "train.val_every=0",
                                      "checkpoint.every=2", "checkpoint.keep=1",
                                      "checkpoint.keep_every=4", "run.dir=" + run_dir};
  std::vector<std::string> sets = base;
  sets.push_back("train.steps=10");
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path(), 120.0);
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(steps_in(ckpts),
            (std::vector<std::string>{"step_00000004", "step_00000008", "step_00000010"}))
      << r;
  for (const char* step : {"step_00000004 |", "step_00000008 |"}) {
    const std::regex line(std::string(step) +
                          R"([^\n]*\| milestone \(checkpoint\.keep_every = 4\): never removed)");
    EXPECT_TRUE(std::regex_search(r.output, line)) << step << "\n" << r;
  }
  EXPECT_FALSE(std::regex_search(r.output, std::regex(R"(step_00000006 \|[^\n]*milestone)")))
      << r;
  EXPECT_TRUE(std::regex_search(
      r.output,
      std::regex(R"(removed 1 older \(checkpoint\.keep = 1; milestones every 4 steps kept\))")))
      << r;

  // ckpt verify / inspect of what is not one checkpoint.
  expect_not_a_checkpoint(run_nupipe({"ckpt", "verify", ckpts}, tmp.path()),
                          {ckpts + " is a directory of checkpoints, not one checkpoint",
                           "its newest committed checkpoint is " + ckpts + "/step_00000010",
                           "`nupipe ckpt verify " + ckpts + "/step_00000010`"});
  expect_not_a_checkpoint(run_nupipe({"ckpt", "inspect", run_dir}, tmp.path()),
                          {run_dir + " is a run directory, not one checkpoint",
                           ckpts + "/step_00000010"});
  expect_not_a_checkpoint(
      run_nupipe({"ckpt", "verify", ckpts + "/step_00000006"}, tmp.path()),
      {ckpts + "/step_00000006 does not exist",
       "newest first: " + ckpts + "/step_00000010, " + ckpts + "/step_00000008, " + ckpts +
           "/step_00000004"});
  expect_not_a_checkpoint(run_nupipe({"ckpt", "inspect", "run/checkpoints/step_8"}, tmp.path()),
                          {"run/checkpoints/step_8 does not exist",
                           "did you mean run/checkpoints/step_00000008?"});
  expect_not_a_checkpoint(run_nupipe({"ckpt", "verify", tmp.file("nowhere/step_00000004")},
                                     tmp.path()),
                          {"does not exist (nor does the directory " + tmp.file("nowhere")});
  expect_not_a_checkpoint(
      run_nupipe({"ckpt", "verify", ckpts + "/step_00000010/state.h5"}, tmp.path()),
      {"is a file of a checkpoint, not its directory",
       "`nupipe ckpt verify " + ckpts + "/step_00000010`"});
  // A checkpoint that really is one still verifies.
  const ProcessResult ok = run_nupipe({"ckpt", "verify", ckpts + "/step_00000008"}, tmp.path());
  EXPECT_EQ(ok.exit_code, 0) << ok;
  EXPECT_NE(ok.output.find("OK: "), std::string::npos) << ok;

  // checkpoint.resume = a mistyped path, or the directory of checkpoints: exit 4, said so,
  // and nothing trained or changed.
  for (const auto& [resume, wanted] :
       std::vector<std::pair<std::string, std::string>>{
           {ckpts + "/step_0000008", "did you mean " + ckpts + "/step_00000008?"},
           {ckpts, "--set checkpoint.resume=" + ckpts + "/step_00000010"}}) {
    std::vector<std::string> s = base;
    s.push_back("train.steps=12");
    s.push_back("checkpoint.resume=" + resume);
    const ProcessResult bad = run_train(tiny_config(), s, tmp.path());
    expect_not_a_checkpoint(bad, {wanted});
    EXPECT_EQ(bad.output.find("step 11"), std::string::npos) << bad;
    EXPECT_EQ(steps_in(ckpts),
              (std::vector<std::string>{"step_00000004", "step_00000008", "step_00000010"}));
  }

  // The runbook: resume from the milestone before a spike; the newer checkpoints are set
  // aside (not deleted), and the run goes on from step 4.
  std::vector<std::string> back = base;
  back.push_back("train.steps=6");
  back.push_back("checkpoint.resume=" + ckpts + "/step_00000004");
  const ProcessResult again = run_train(tiny_config(), back, tmp.path(), 120.0);
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_NE(again.output.find("resuming from " + ckpts + "/step_00000004 (step 4"),
            std::string::npos) << again;
  for (const char* gone : {"step_00000008", "step_00000010"}) {
    EXPECT_TRUE(fs::is_directory(ckpts + "/" + gone + ".abandoned")) << gone << "\n"
                                                                     << list_dir(ckpts);
  }
  EXPECT_TRUE(fs::is_directory(ckpts + "/step_00000006")) << list_dir(ckpts);
}

TEST(CliCheckpointMessages, KeepEveryIsValidated) {
  TempDir tmp;
  for (const auto& [value, wanted] : std::vector<std::pair<std::string, std::string>>{
           {"-1", "checkpoint.keep_every"},
           {"150", "checkpoint.keep_every = 150 is not a multiple of checkpoint.every = 100"}}) {
    const ProcessResult r = run_train(
        tiny_config(), {"checkpoint.keep_every=" + value, "run.dir=" + tmp.file("run")},
        tmp.path());
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_NE(r.output.find(wanted), std::string::npos) << r;
    EXPECT_FALSE(fs::exists(tmp.file("run"))) << list_dir(tmp.file("run"));
  }
}

// A text file given as tokens: the hint prepares a new .bin beside it, never --out over it.
TEST(CliCheckpointMessages, TextFileAsTokensHintWritesANewFile) {
  TempDir tmp;
  for (const auto& [name, out] : std::vector<std::pair<std::string, std::string>>{
           {"story.txt", "story.bin"}, {"story.bin", "story.bin.tokens.bin"}}) {
    const std::string text = tmp.file(name);
    {
      std::ofstream f(text);
      for (int i = 0; i < 200; ++i) f << "Once upon a time there was a small model.\n";
    }
    const ProcessResult r = run_train(
        tiny_config(), {"data.train=" + text, "data.val=", "run.dir=" + tmp.file("run")},
        tmp.path());
    EXPECT_EQ(r.exit_code, 3) << r;
    EXPECT_NE(r.output.find("bad magic number"), std::string::npos) << r;
    EXPECT_NE(r.output.find("this looks like a text file"), std::string::npos) << r;
    EXPECT_NE(r.output.find("--text " + text + " --out " + tmp.file(out) + "`"),
              std::string::npos) << r;
    EXPECT_EQ(r.output.find("--out " + text + "`"), std::string::npos)
        << "the hint overwrites the text\n" << r;
    // And shorter than a token file's header: the same hint.
    { std::ofstream f(text, std::ios::trunc); f << "Hello, world.\n"; }
    const ProcessResult s = run_train(
        tiny_config(), {"data.train=" + text, "data.val=", "run.dir=" + tmp.file("run")},
        tmp.path());
    EXPECT_EQ(s.exit_code, 3) << s;
    EXPECT_NE(s.output.find("--text " + text + " --out " + tmp.file(out) + "`"),
              std::string::npos) << s;
    EXPECT_EQ(s.output.find("--out " + text + "`"), std::string::npos) << s;
  }
}

// Two ranks: the missing checkpoint.resume is the same verdict on every rank, said once.
TEST(CliCheckpointMessages, MissingResumePathIsOneVerdictOnEveryRank) {
  const std::string mpirun = find_in_path("mpirun");
  ASSERT_FALSE(mpirun.empty())
      << "mpirun is not in PATH: scripts/setup.sh installs Open MPI";
  TempDir tmp;
  const std::string codes = tmp.file("codes");
  fs::create_directories(codes);
  fs::create_directories(tmp.file("old/checkpoints"));
  const std::string wrapper = "\"$0\" \"$@\"; rc=$?; echo $rc > '" + codes +
                              "'/rc.${OMPI_COMM_WORLD_RANK:-x}; exit $rc";
  std::vector<std::string> argv{mpirun, "--oversubscribe", "-np", "2", "/bin/sh", "-c", wrapper,
                                nupipe_bin(), "train", tiny_config()};
  for (const std::string& s :
       {std::string("parallel.pipeline=2"), std::string("parallel.data=1"),
        std::string("runtime.threads=1"), "run.dir=" + tmp.file("run"),
        "checkpoint.resume=" + tmp.file("old/checkpoints/step_00000100")}) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  auto env = kMpiEnv;
  env["OMPI_MCA_orte_abort_on_non_zero_status"] = "0";
  const ProcessResult r = run_process(argv, tmp.path(), 60.0, env);
  ASSERT_FALSE(r.timed_out) << r;
  EXPECT_EQ(count_occurrences(r.output, "error: " + tmp.file("old/checkpoints/step_00000100") +
                                            " does not exist"),
            1) << r;
  EXPECT_EQ(count_occurrences(r.output, "HINT:"), 1) << r;
  EXPECT_NE(r.output.find("old/checkpoints holds no committed checkpoint"), std::string::npos)
      << r;
  for (const char* rank : {"rc.0", "rc.1"}) {
    EXPECT_EQ(read_file(codes + "/" + rank), "4\n") << rank << "\n" << r;
  }
}

}  // namespace
}  // namespace nupipe::cli_test
