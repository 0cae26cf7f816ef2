// test_cli_checkpoint_refusals.cpp: checkpoints that must not be trusted or written to. A
// manifest whose step or layout is not the file's (it has no checksum of its own) fails
// verification and the resume; an unfinished save (step_N.tmp) named by checkpoint.resume is
// refused and left in place; a checkpoint.dir that cannot take a save is refused at start-up
// (exit 2) before a step is trained or anything in run.dir is written.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

// One run of 4 steps saving every 2 (step_00000002, step_00000004) in tmp/run.
std::vector<std::string> base_sets(const std::string& run_dir) {
  return {"runtime.threads=1", "train.val_every=0", "checkpoint.every=2",
          "run.dir=" + run_dir};
}

std::string trained_run(const TempDir& tmp) {
  const std::string run_dir = tmp.file("run");
  std::vector<std::string> sets = base_sets(run_dir);
  sets.push_back("train.steps=4");
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path(), 120.0);
  EXPECT_EQ(r.exit_code, 0) << r;
  return run_dir;
}

TEST(CliCheckpointRefusals, ManifestStepOrLayoutNotTheFilesFailsVerification) {
  TempDir tmp;
  const std::string run_dir = trained_run(tmp);
  const std::string ckpt = run_dir + "/checkpoints/step_00000004";
  const std::string manifest = ckpt + "/manifest.json";
  const std::string good = read_file(manifest);
  ASSERT_EQ(run_nupipe({"ckpt", "verify", ckpt}, tmp.path()).exit_code, 0);

  for (const auto& [from, to, wanted] : std::vector<std::tuple<std::string, std::string,
                                                               std::string>>{
           {"\"step\": 4", "\"step\": 5", "says step 5, but state.h5 holds step 4"},
           {"pipeline 1 x data 1", "pipeline 2 x data 1",
            "says layout \"pipeline 2 x data 1"}}) {
    std::string edited = good;
    const size_t at = edited.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in\n" << good;
    edited.replace(at, from.size(), to);
    write_file(manifest, edited);
    const ProcessResult v = run_nupipe({"ckpt", "verify", ckpt}, tmp.path());
    EXPECT_EQ(v.exit_code, 4) << v;
    EXPECT_NE(v.output.find(wanted), std::string::npos) << wanted << "\n" << v;
    // The resume does not trust it either: an explicit path stops with exit 4.
    std::vector<std::string> sets = base_sets(run_dir);
    sets.push_back("train.steps=6");
    sets.push_back("checkpoint.resume=" + ckpt);
    const ProcessResult t = run_train(tiny_config(), sets, tmp.path(), 120.0);
    EXPECT_EQ(t.exit_code, 4) << t;
    EXPECT_NE(t.output.find(wanted), std::string::npos) << wanted << "\n" << t;
    EXPECT_EQ(t.output.find("step 5/"), std::string::npos) << t;
  }
  write_file(manifest, good);
  EXPECT_EQ(run_nupipe({"ckpt", "verify", ckpt}, tmp.path()).exit_code, 0);
}

TEST(CliCheckpointRefusals, AnUnfinishedSaveNamedForResumeIsRefusedAndKept) {
  TempDir tmp;
  const std::string run_dir = trained_run(tmp);
  const std::string ckpts = run_dir + "/checkpoints";
  // A complete-looking save that never committed (its rename did not happen).
  fs::copy(ckpts + "/step_00000004", ckpts + "/step_00000006.tmp", fs::copy_options::recursive);
  for (const std::string& named : {ckpts + "/step_00000006.tmp", ckpts + "/step_00000006.tmp/"}) {
    std::vector<std::string> sets = base_sets(run_dir);
    sets.push_back("train.steps=8");
    sets.push_back("checkpoint.resume=" + named);
    const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
    EXPECT_EQ(r.exit_code, 4) << r;
    EXPECT_NE(r.output.find("is an unfinished save"), std::string::npos) << r;
    EXPECT_NE(r.output.find("HINT: name a committed checkpoint, e.g. " + ckpts + "/step_00000006 "),
              std::string::npos)
        << r;
    EXPECT_EQ(r.output.find("step 5/"), std::string::npos) << r;
    EXPECT_TRUE(fs::is_directory(ckpts + "/step_00000006.tmp")) << list_dir(ckpts);
  }
}

TEST(CliCheckpointRefusals, ACheckpointDirThatCannotBeWrittenIsRefusedAtStartUp) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  write_file(tmp.file("a_file"), "not a directory\n");
  std::vector<std::string> sets = base_sets(run_dir);
  sets.push_back("train.steps=4");
  sets.push_back("checkpoint.dir=" + tmp.file("a_file/checkpoints"));
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("checkpoint.dir " + tmp.file("a_file/checkpoints") +
                          " cannot be created"),
            std::string::npos)
      << r;
  EXPECT_NE(r.output.find("HINT: give a writable directory"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("step 1/"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(run_dir + "/metrics.jsonl")) << list_dir(run_dir);
  EXPECT_FALSE(fs::exists(run_dir + "/train.log")) << list_dir(run_dir);

  // Without checkpoints the same directory is never needed, and the run trains.
  sets.push_back("checkpoint.every=0");
  const ProcessResult ok = run_train(tiny_config(), sets, tmp.path(), 120.0);
  EXPECT_EQ(ok.exit_code, 0) << ok;
}

}  // namespace
}  // namespace nupipe::cli_test
