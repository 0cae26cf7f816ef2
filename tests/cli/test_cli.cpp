// test_cli.cpp: end-to-end tests of the `nupipe` executable's contract that need no training
// to speak of: --help, usage and config errors (exit 2), bad token files (exit 3), run.dir
// safety, `data prepare`, and the refusal of a multi-rank launch.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/data/token_file.h"
#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

// ---------------------------------------------------------------------------------------
// 1. --help and usage errors

TEST(CliHelp, TopLevelHelpListsTheVerbs) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({"--help"}, tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("train"), std::string::npos) << r;
  EXPECT_NE(r.output.find("data"), std::string::npos) << r;
  EXPECT_NE(r.output.find("--help"), std::string::npos) << r;
}

TEST(CliHelp, TrainHelpShowsConfigAndSet) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({"train", "--help"}, tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("config"), std::string::npos) << r;
  EXPECT_NE(r.output.find("--set"), std::string::npos) << r;
  EXPECT_NE(r.output.find("KEY=VALUE"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("error"), std::string::npos) << r;
}

TEST(CliHelp, DataPrepareHelpShowsTextAndOut) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({"data", "prepare", "--help"}, tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("--text"), std::string::npos) << r;
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r;
}

TEST(CliUsage, NoVerbIsUsageError) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("subcommand"), std::string::npos) << r;
}

TEST(CliUsage, UnknownOptionIsUsageError) {
  TempDir tmp;
  // At the top level CLI11 reports the missing subcommand first ("A subcommand is
  // required"), not the unknown option, so only the exit code and the pointer to --help
  // are asserted there.
  const ProcessResult r = run_nupipe({"--bogus-option"}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("--help"), std::string::npos) << r;

  const ProcessResult t = run_nupipe({"train", tiny_config(), "--bogus-option"}, tmp.path());
  EXPECT_EQ(t.exit_code, 2) << t;
  EXPECT_NE(t.output.find("--bogus-option"), std::string::npos) << t;
  EXPECT_FALSE(fs::exists(tmp.file("runs"))) << "a refused command created runs/:\n"
                                            << list_dir(tmp.path());
}

TEST(CliUsage, UnknownVerbAndMissingSubverbAreUsageErrors) {
  TempDir tmp;
  // CLI11 reports an unknown verb as "A subcommand is required".
  const ProcessResult r = run_nupipe({"frobnicate"}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("--help"), std::string::npos) << r;
  const ProcessResult d = run_nupipe({"data"}, tmp.path());
  EXPECT_EQ(d.exit_code, 2) << d;
  const ProcessResult t = run_nupipe({"train"}, tmp.path());  // the config is required
  EXPECT_EQ(t.exit_code, 2) << t;
  EXPECT_NE(t.output.find("config"), std::string::npos) << t;
}

// ---------------------------------------------------------------------------------------
// 2. Bad config: exit 2, the message names the key, run.dir is not created

// Runs `train` with the given overrides plus run.dir inside tmp; checks exit 2, that the
// output contains every one of `expected`, and that run.dir was not created.
void expect_config_refused(const std::string& config, const std::vector<std::string>& sets,
                           const std::vector<std::string>& expected) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  std::vector<std::string> all = sets;
  all.push_back("run.dir=" + run_dir);
  const ProcessResult r = run_train(config, all, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << e << "\n" << r;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(run_dir)) << "run.dir was created by a refused config:\n"
                                    << list_dir(run_dir);
  EXPECT_FALSE(fs::exists(tmp.file("runs"))) << list_dir(tmp.path());
}

TEST(CliConfig, UnknownKeyIsNamed) {
  expect_config_refused(tiny_config(), {"model.n_layers=2"},
                        {"model.n_layers", "unknown key", "model.n_layer'"});
}

TEST(CliConfig, WrongTypeIsNamed) {
  expect_config_refused(tiny_config(), {"model.d_model=\"wide\""},
                        {"model.d_model", "integer", "string"});
}

TEST(CliConfig, BadBatchArithmeticIsNamed) {
  expect_config_refused(tiny_config(), {"train.global_batch=15"},
                        {"train.global_batch", "15", "multiple", "train.micro_batch"});
}

TEST(CliConfig, BadBatchArithmeticInFileNamesFileAndLine) {
  TempDir tmp;
  const std::string cfg = tmp.file("batch.toml");
  write_file(cfg, "[train]\nmicro_batch = 8\nglobal_batch = 20\n");
  expect_config_refused(cfg, {}, {"batch.toml:3:", "train.global_batch"});
}

TEST(CliConfig, TomlSyntaxErrorNamesFileAndLine) {
  TempDir tmp;
  const std::string cfg = tmp.file("broken.toml");
  write_file(cfg, "[model]\nn_layer = 2\nd_model = = 64\n");
  expect_config_refused(cfg, {}, {"broken.toml:3:"});
}

TEST(CliConfig, MissingConfigFileIsNamed) {
  TempDir tmp;
  const std::string cfg = tmp.file("no_such_config.toml");
  expect_config_refused(cfg, {}, {"no_such_config.toml"});
}

// ---------------------------------------------------------------------------------------
// 3. Bad data: exit 3, the message names the file and the problem, run.dir untouched

std::vector<uint16_t> ramp_tokens(int n, int modulo = 200) {
  std::vector<uint16_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<uint16_t>(i % modulo);
  return t;
}

// Overwrites bytes of an existing file at `offset`.
void poke(const std::string& path, int64_t offset, const void* bytes, size_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open()) << path;
  f.seekp(offset);
  f.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good()) << path;
}

// Trains on `data_file` (as data.train, or data.val when `as_val`) and checks exit 3, that
// the output names the file and contains every one of `expected`, and that nothing at all
// was written to run.dir (the data is validated before run.dir is touched).
void expect_data_refused(const TempDir& tmp, const std::string& data_file,
                         const std::vector<std::string>& expected, bool as_val = false) {
  const std::string run_dir = tmp.file("run");
  std::vector<std::string> sets{"run.dir=" + run_dir, "runtime.threads=1", "train.steps=5",
                                "optim.warmup_steps=0"};
  if (as_val) {
    sets.push_back("data.val=" + data_file);
  } else {
    sets.push_back("data.train=" + data_file);
    sets.push_back("data.val=");
  }
  const ProcessResult r = run_train(tiny_config(), sets, tmp.path());
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.output.find(data_file), std::string::npos) << "the message must name the file\n"
                                                         << r;
  for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << e << "\n" << r;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r;
  EXPECT_EQ(r.output.find("step 1/"), std::string::npos) << "it trained on bad data\n" << r;
  EXPECT_FALSE(fs::exists(run_dir + "/metrics.jsonl")) << list_dir(run_dir);
  EXPECT_FALSE(fs::exists(run_dir)) << "bad data left run.dir behind; it holds:\n"
                                    << list_dir(run_dir);
}

TEST(CliData, TruncatedTokenFile) {
  TempDir tmp;
  const std::string f = tmp.file("truncated.bin");
  const auto tokens = ramp_tokens(1000);
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  fs::resize_file(f, fs::file_size(f) - 10);  // the last 5 tokens are gone
  expect_data_refused(tmp, f, {"truncated", "1000 tokens"});
}

TEST(CliData, BadMagic) {
  TempDir tmp;
  const std::string f = tmp.file("bad_magic.bin");
  const auto tokens = ramp_tokens(1000);
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  const int32_t magic = 12345678;
  poke(f, 0, &magic, sizeof(magic));
  expect_data_refused(tmp, f, {"magic", "12345678"});
}

TEST(CliData, TokenIdOutsideVocabNamesByteOffset) {
  TempDir tmp;
  const std::string f = tmp.file("big_id.bin");
  auto tokens = ramp_tokens(1000);
  tokens[700] = 300;  // >= vocab_size 256, at byte offset 1024 + 2 * 700 = 2424
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  expect_data_refused(tmp, f, {"byte offset 2424", "300", "vocab_size"});
}

TEST(CliData, MissingFile) {
  TempDir tmp;
  expect_data_refused(tmp, tmp.file("does_not_exist.bin"), {"No such file"});
}

TEST(CliData, FileShorterThanOneWindow) {
  TempDir tmp;
  const std::string f = tmp.file("short.bin");
  const auto tokens = ramp_tokens(10);  // seq_len 64 needs 65
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  expect_data_refused(tmp, f, {"10 tokens", "seq_len"});
}

TEST(CliData, BadValidationFileIsRefusedToo) {
  TempDir tmp;
  const std::string f = tmp.file("bad_val.bin");
  const auto tokens = ramp_tokens(1000);
  runtime::write_token_file(f, tokens.data(), static_cast<int64_t>(tokens.size()));
  const int32_t version = 2;
  poke(f, 4, &version, sizeof(version));
  expect_data_refused(tmp, f, {"version"}, /*as_val=*/true);
}

// ---------------------------------------------------------------------------------------
// 4. A second run into a run.dir that holds a run is refused and changes nothing

TEST(CliRunDir, SecondRunContinuesFromItsCheckpointOrIsRefusedWithNever) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const std::vector<std::string> first_sets{"run.dir=" + run_dir, "runtime.threads=1",
                                            "train.steps=3", "optim.warmup_steps=0",
                                            "run.log_every=1", "data.val="};
  const ProcessResult first = run_train(tiny_config(), first_sets, tmp.path());
  ASSERT_EQ(first.exit_code, 0) << first;
  const std::string metrics = read_file(run_dir + "/metrics.jsonl");
  const std::string config = read_file(run_dir + "/config.toml");
  const std::string log = read_file(run_dir + "/train.log");
  ASSERT_EQ(read_lines(run_dir + "/metrics.jsonl").size(), 3u) << metrics;
  ASSERT_FALSE(config.empty());
  ASSERT_FALSE(log.empty());

  // checkpoint.resume = "never" refuses a directory that holds a run, and leaves it alone.
  const ProcessResult second =
      run_train(tiny_config(),
                {"run.dir=" + run_dir, "runtime.threads=1", "train.steps=4",
                 "optim.warmup_steps=0", "optim.lr=1e-4", "data.val=",
                 "checkpoint.resume=never"},
                tmp.path());
  EXPECT_EQ(second.exit_code, 2) << second;
  EXPECT_NE(second.output.find("checkpoint.resume = \"never\""), std::string::npos) << second;
  EXPECT_NE(second.output.find(run_dir), std::string::npos) << second;
  EXPECT_EQ(second.output.find("step 1/"), std::string::npos) << "it trained\n" << second;
  EXPECT_EQ(read_file(run_dir + "/metrics.jsonl"), metrics) << "metrics.jsonl was modified";
  EXPECT_EQ(read_file(run_dir + "/config.toml"), config) << "config.toml was overwritten";
  EXPECT_EQ(read_file(run_dir + "/train.log"), log) << "train.log was modified";

  // The same command with more steps (checkpoint.resume = "auto", the default) continues
  // from the checkpoint of step 3 and appends step 4's record, warning that the schedule's
  // length changed.
  const std::vector<std::string> more{"run.dir=" + run_dir, "runtime.threads=1", "train.steps=4",
                                      "optim.warmup_steps=0", "run.log_every=1", "data.val="};
  const ProcessResult third = run_train(tiny_config(), more, tmp.path());
  ASSERT_EQ(third.exit_code, 0) << third;
  EXPECT_NE(third.output.find("resuming from"), std::string::npos) << third;
  EXPECT_NE(third.output.find("train.steps: 3 -> 4"), std::string::npos) << third;
  EXPECT_NE(third.output.find("step 4/4"), std::string::npos) << third;
  EXPECT_EQ(third.output.find("step 1/4"), std::string::npos) << third;
  const std::vector<std::string> lines = read_lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u) << read_file(run_dir + "/metrics.jsonl");
  EXPECT_EQ(read_file(run_dir + "/metrics.jsonl").rfind(metrics, 0), 0u)
      << "the first run's records were not kept as they were";
  EXPECT_NE(lines[3].find("\"step\":4"), std::string::npos) << lines[3];
}

// ---------------------------------------------------------------------------------------
// 7. data prepare, and training on its output

// A text with every byte value (0 and 255 included) followed by readable words.
std::string sample_text() {
  std::string s;
  for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b));
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "ran", "home", "fast"};
  uint32_t x = 12345;
  while (s.size() < 12000) {
    x = x * 1664525u + 1013904223u;
    s += words[(x >> 16) % 10];
    s += ((x >> 8) % 11 == 0) ? ".\n" : " ";
  }
  return s;
}

TEST(CliPrepare, WritesByteTokensThatTrainingAccepts) {
  TempDir tmp;
  const std::string text_path = tmp.file("corpus.txt"), out = tmp.file("corpus.bin");
  const std::string text = sample_text();
  write_file(text_path, text);

  const ProcessResult p =
      run_nupipe({"data", "prepare", "--text", text_path, "--out", out}, tmp.path());
  ASSERT_EQ(p.exit_code, 0) << p;
  EXPECT_NE(p.output.find(std::to_string(text.size()) + " tokens"), std::string::npos) << p;
  EXPECT_FALSE(fs::exists(out + ".tmp")) << list_dir(tmp.path());

  {
    const runtime::TokenFile tf(out, 256);
    ASSERT_EQ(tf.size(), static_cast<int64_t>(text.size()));
    int64_t mismatches = 0, first = -1;
    for (int64_t i = 0; i < tf.size(); ++i) {
      if (tf.data()[i] != static_cast<unsigned char>(text[static_cast<size_t>(i)])) {
        if (first < 0) first = i;
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << "first mismatch at token " << first;
  }

  const std::string run_dir = tmp.file("run");
  const ProcessResult t = run_train(
      tiny_config(),
      {"data.train=" + out, "data.val=", "train.steps=8", "optim.warmup_steps=2",
       "model.seq_len=16", "run.log_every=1", "runtime.threads=1", "run.dir=" + run_dir},
      tmp.path());
  ASSERT_EQ(t.exit_code, 0) << t;
  EXPECT_NE(t.output.find(out), std::string::npos) << "the log should name the data file\n"
                                                   << t;
  const auto lines = read_lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 8u) << read_file(run_dir + "/metrics.jsonl");
  const auto first = nlohmann::json::parse(lines.front());
  const auto last = nlohmann::json::parse(lines.back());
  EXPECT_EQ(last["step"].get<int>(), 8);
  EXPECT_LT(last["loss"].get<double>(), first["loss"].get<double>()) << "no learning at all";
  for (const auto& l : lines) {
    EXPECT_FALSE(nlohmann::json::parse(l).contains("val_loss")) << "data.val is empty: " << l;
  }
}

TEST(CliPrepare, MissingTextOptionIsUsageError) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({"data", "prepare", "--out", tmp.file("x.bin")}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("--text"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(tmp.file("x.bin")));
}

TEST(CliPrepare, NonexistentTextIsUsageError) {
  TempDir tmp;
  const std::string text = tmp.file("nope.txt");
  const ProcessResult r =
      run_nupipe({"data", "prepare", "--text", text, "--out", tmp.file("x.bin")}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("nope.txt"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(tmp.file("x.bin")));
}

TEST(CliPrepare, UnwritableOutIsDataError) {
  TempDir tmp;
  const std::string text = tmp.file("in.txt");
  write_file(text, "hello, world\n");
  // We may run as root, so permissions do not stop writes: use a directory that is not there.
  const std::string out = tmp.file("no_such_dir/out.bin");
  const ProcessResult r = run_nupipe({"data", "prepare", "--text", text, "--out", out}, tmp.path());
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.output.find(out), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(tmp.file("no_such_dir"))) << list_dir(tmp.path());

  // A regular file where a directory should be: ENOTDIR, also exit 3.
  const std::string out2 = text + "/out.bin";
  const ProcessResult r2 =
      run_nupipe({"data", "prepare", "--text", text, "--out", out2}, tmp.path());
  EXPECT_EQ(r2.exit_code, 3) << r2;
  EXPECT_NE(r2.output.find(out2), std::string::npos) << r2;
}

TEST(CliPrepare, EmptyTextIsDataError) {
  TempDir tmp;
  const std::string text = tmp.file("empty.txt"), out = tmp.file("empty.bin");
  write_file(text, "");
  const ProcessResult r = run_nupipe({"data", "prepare", "--text", text, "--out", out}, tmp.path());
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.output.find("empty"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

// ---------------------------------------------------------------------------------------
// 8. A world that does not match pipeline x data is refused, by every rank, without a hang

TEST(CliMultiRank, WorldOfTheWrongSizeIsRefusedOnceWithoutRunDir) {
  const std::string mpirun = find_in_path("mpirun");
  ASSERT_FALSE(mpirun.empty())
      << "mpirun is not in PATH: scripts/setup.sh installs Open MPI";
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult r = run_process(
      {mpirun, "--oversubscribe", "--allow-run-as-root", "-np", "2", nupipe_bin(), "train",
       tiny_config(), "--set", "run.dir=" + run_dir},
      tmp.path(), /*timeout_s=*/60.0, {{"OMPI_MCA_rmaps_base_oversubscribe", "1"}});
  ASSERT_FALSE(r.timed_out) << "a rank hung\n" << r;
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_EQ(count_occurrences(r.output, "the world has 2 ranks"), 1)
      << "the refusal should be reported once, by rank 0\n" << r;
  EXPECT_NE(r.output.find("2 x 2 = 4"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(run_dir)) << list_dir(run_dir);
  EXPECT_NE(r.output.find("or run on 2 ranks with --set parallel.pipeline=1 --set "
                          "parallel.data=2 --set parallel.stage_layers=uniform"),
            std::string::npos) << r;
}

// The hint for one process (no mpirun) is the whole fix: the flags it gives, pasted, train.
TEST(CliMultiRank, OneRankHintIsAFixThatTrains) {
  TempDir tmp;
  const std::string run_dir = tmp.file("run");
  const ProcessResult r =
      run_nupipe({"train", tiny_config(), "--set", "run.dir=" + run_dir}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  const std::string flags =
      "--set parallel.pipeline=1 --set parallel.data=1 --set parallel.stage_layers=uniform";
  ASSERT_NE(r.output.find("or run on 1 rank with " + flags), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(run_dir)) << list_dir(run_dir);
  const ProcessResult fixed = run_nupipe(
      {"train", tiny_config(), "--set", "run.dir=" + run_dir, "--set", "parallel.pipeline=1",
       "--set", "parallel.data=1", "--set", "parallel.stage_layers=uniform", "--set",
       "train.steps=2"},
      tmp.path());
  EXPECT_EQ(fixed.exit_code, 0) << fixed;
}

}  // namespace
}  // namespace nupipe::cli_test
