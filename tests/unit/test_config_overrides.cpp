// test_config_overrides.cpp: `--set section.key=value` overrides, TOML syntax errors and
// loading from a file: each refusal names the key or the file and uses exit code 2.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "launcher/config.h"
#include "runtime/error.h"

namespace nupipe::launcher {
namespace {

Error error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "test.toml", overrides);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    return e;
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return Error(ExitCode::ok, "(no error)");
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Config, OverridesApplied) {
  const Config c = parse_config(
      "[model]\nn_layer = 4\n[optim]\nlr = 0.1\n",
      "t",
      {"model.n_layer=2", "data.synthetic.order=3", "optim.lr = 0.5",
       "model.tie_embeddings=false", "data.val=\"synthetic\"", "train.steps=10",
       "train.steps=20"});
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.data.synthetic.order, 3);
  EXPECT_EQ(c.adamw.lr, 0.5f);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.data.val, "synthetic");
  EXPECT_EQ(c.train.steps, 20);  // the last one wins
  EXPECT_EQ(c.lr.total_steps, 20);
}

TEST(Config, OverrideValueFallsBackToString) {
  const Config c = parse_config("", "t", {"run.dir=/tmp/x y", "data.train=tokens.bin",
                                          "data.val=", "runtime.device=cpu"});
  EXPECT_EQ(c.run.dir, "/tmp/x y");
  EXPECT_EQ(c.data.train, "tokens.bin");
  EXPECT_EQ(c.data.val, "");
  // A string key takes the text even when it reads as another TOML type.
  EXPECT_EQ(parse_config("", "t", {"run.dir=2024"}).run.dir, "2024");
  // A non-string key given plain text gets the type error, naming the --set.
  const Error e = error_of("", {"model.n_layer=abc"});
  EXPECT_CONTAINS(e.what(), "model.n_layer must be an integer, got string");
  EXPECT_CONTAINS(e.what(), "--set model.n_layer=abc");
}

TEST(Config, OverrideOutOfRangeNamesTheSet) {
  const Error e = error_of("[model]\nn_layer = 4\n", {"model.n_layer=0"});
  EXPECT_CONTAINS(e.what(), "--set model.n_layer=0");
  EXPECT_CONTAINS(e.what(), "model.n_layer must be >= 1, got 0");
}

TEST(Config, OverrideOfUnknownKeyRefused) {
  const Error e = error_of("", {"model.n_layers=3"});
  EXPECT_CONTAINS(e.what(), "unknown key 'model.n_layers'");
  EXPECT_CONTAINS(e.what(), "did you mean 'model.n_layer'?");
  EXPECT_CONTAINS(error_of("", {"checkpoint.evry=3"}).what(), "'checkpoint.every'");
  EXPECT_CONTAINS(error_of("", {"model=3"}).what(), "'model' is a section");
  // Descending through a value that is not a table.
  EXPECT_CONTAINS(error_of("[data]\nsynthetic = 1\n", {"data.synthetic.order=3"}).what(),
                  "data.synthetic must be a table");
}

TEST(Config, MalformedOverrideRefused) {
  for (const std::string bad : {"model.n_layer", "=3", " = 3", "model..n_layer=3", ".x=1"}) {
    SCOPED_TRACE(bad);
    const Error e = error_of("", {bad});
    EXPECT_CONTAINS(e.what(), "malformed override '" + bad + "'");
  }
}

TEST(Config, SyntaxErrorShowsLineAndColumn) {
  const Error e = error_of("[model]\nn_layer = 4\nd_model = = 64\n");
  EXPECT_CONTAINS(e.what(), "test.toml:3:");
  EXPECT_CONTAINS(e.what(), "TOML syntax error");
  EXPECT_CONTAINS(e.hint(), "line 3");
  EXPECT_CONTAINS(error_of("[model]\nn_layer = 4\nn_layer = 5\n").what(), "test.toml:3:");
}

TEST(Config, LoadConfigNamesTheFile) {
  try {
    load_config("/nonexistent/dir/cfg.toml");
    ADD_FAILURE() << "missing file accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    EXPECT_CONTAINS(e.what(), "/nonexistent/dir/cfg.toml");
  }
  const auto dir = std::filesystem::temp_directory_path() /
                   ("nupipe_test_config_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "bad.toml";
  std::ofstream(file) << "[train]\nsteps = 5\nbogus = 1\n";
  try {
    load_config(file.string());
    ADD_FAILURE() << "bad file accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    EXPECT_CONTAINS(e.what(), file.string() + ":3:");
    EXPECT_CONTAINS(e.what(), "'train.bogus'");
  }
  std::ofstream(file) << "[train]\nsteps = 5\n";
  EXPECT_EQ(load_config(file.string()).train.steps, 5);
  EXPECT_EQ(load_config(file.string(), {"train.steps=6"}).train.steps, 6);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nupipe::launcher
