// test_config_layout.cpp: the [parallel] layout keys and train.recompute: the stage split's
// forms ("uniform", a list, "auto") and refusals, named at the key that set them, and the schedule.
#include <gtest/gtest.h>

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

TEST(Config, StageLayersForms) {
  using Kind = parallel::StageLayersSpec::Kind;
  const Config list = parse_config("[parallel]\npipeline = 2\nstage_layers = [1, 3]\n", "t");
  EXPECT_EQ(list.parallel.stage_layers.kind, Kind::explicit_list);
  EXPECT_EQ(list.parallel.stage_layers.layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(parse_config("[parallel]\nstage_layers = \"uniform\"\n", "t").parallel.stage_layers.kind,
            Kind::uniform);
  EXPECT_EQ(parse_config("", "t").parallel.stage_layers.kind, Kind::uniform);  // the default
  // Empty first and last stages are allowed.
  EXPECT_EQ(parse_config("[parallel]\npipeline = 3\nstage_layers = [0, 4, 0]\n", "t")
                .parallel.stage_layers.layers,
            (std::vector<int>{0, 4, 0}));

  // --set takes the TOML array, and the words with or without quotes.
  const Config set = parse_config("", "t", {"parallel.pipeline=2", "parallel.stage_layers=[1,3]"});
  EXPECT_EQ(set.parallel.stage_layers.layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(parse_config("[parallel]\nstage_layers = [4]\n", "t", {"parallel.stage_layers=uniform"})
                .parallel.stage_layers.kind,
            Kind::uniform);
  EXPECT_EQ(parse_config("[parallel]\nstage_layers = [4]\n", "t",
                         {"parallel.stage_layers=\"uniform\""})
                .parallel.stage_layers.kind,
            Kind::uniform);
  const Error bad_set = error_of("", {"parallel.pipeline=2", "parallel.stage_layers=[1,2]"});
  EXPECT_CONTAINS(bad_set.what(), "--set parallel.stage_layers=[1,2]: ");
  EXPECT_CONTAINS(bad_set.what(), "sums to 3");
}

TEST(Config, StageLayersWrongTypeNamed) {
  const std::string expected =
      "parallel.stage_layers must be an array of integers, \"uniform\" or \"auto\"";
  const Error e = error_of("[parallel]\nstage_layers = 4\n");
  EXPECT_CONTAINS(e.what(), "test.toml:2:");
  EXPECT_CONTAINS(e.what(), expected + ", got integer");
  EXPECT_CONTAINS(e.hint(), "parallel.stage_layers = \"uniform\"");
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = \"even\"\n").what(),
                  expected + ", got string \"even\"");
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = \"Uniform\"\n").what(), expected);
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = true\n").what(), expected + ", got boolean");
  EXPECT_CONTAINS(error_of("[parallel]\npipeline = 2\nstage_layers = [1, 2.5]\n").what(),
                  expected + ", got an array with entry 1 of type float");
  EXPECT_CONTAINS(error_of("[parallel]\npipeline = 2\nstage_layers = [\"2\", 2]\n").what(),
                  "entry 0 of type string");
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = [[4]]\n").what(), "entry 0 of type array");
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = [3000000000]\n").what(),
                  "parallel.stage_layers[0] = 3000000000 does not fit in a 32-bit integer");
  const Error set = error_of("", {"parallel.stage_layers=even"});
  EXPECT_CONTAINS(set.what(), "--set parallel.stage_layers=even");
  EXPECT_CONTAINS(set.what(), expected);
}

// Every refusal of a split comes from parallel::make_stage_layout, reported at the key.
TEST(Config, StageLayersRefusalsNamed) {
  const Error len = error_of("[parallel]\npipeline = 4\nstage_layers = [1, 3]\n");
  EXPECT_CONTAINS(len.what(), "test.toml:3:");
  EXPECT_CONTAINS(len.what(), "parallel.stage_layers = [1, 3] has 2 entries but parallel.pipeline = 4");
  EXPECT_CONTAINS(len.hint(), "parallel.stage_layers = [1, 1, 1, 1]");

  const Error sum = error_of("[parallel]\npipeline = 2\nstage_layers = [1, 2]\n");
  EXPECT_CONTAINS(sum.what(), "parallel.stage_layers = [1, 2] sums to 3 blocks but model.n_layer = 4");
  EXPECT_CONTAINS(sum.hint(), "[2, 2]");
  // A single stage holds every block.
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = [3]\n").what(), "sums to 3");

  const Error neg = error_of("[parallel]\npipeline = 3\nstage_layers = [3, -1, 2]\n");
  EXPECT_CONTAINS(neg.what(), "parallel.stage_layers = [3, -1, 2] has a negative entry");

  const Error mid = error_of("[parallel]\npipeline = 3\nstage_layers = [2, 0, 2]\n");
  EXPECT_CONTAINS(mid.what(), "parallel.stage_layers = [2, 0, 2] gives middle stage 1");

  // "uniform" that would leave a middle stage empty: reported where parallel.pipeline was set.
  const Error uni = error_of("[model]\nn_layer = 4\n[parallel]\npipeline = 6\n");
  EXPECT_CONTAINS(uni.what(), "test.toml:4:");
  EXPECT_CONTAINS(uni.what(), "parallel.stage_layers = \"uniform\" with parallel.pipeline = 6");
  EXPECT_CONTAINS(uni.what(), "middle stage 1");
  EXPECT_CONTAINS(uni.hint(), "[0, 1, 1, 1, 1, 0]");
  // A written list is blamed even when another key changed under it.
  const Error few = error_of("[parallel]\nstage_layers = [1, 1, 1, 1]\npipeline = 4\n",
                             {"model.n_layer=3"});
  EXPECT_CONTAINS(few.what(), "test.toml:2:");  // the list was written there
  EXPECT_CONTAINS(few.what(), "sums to 4 blocks but model.n_layer = 3");

  // "auto" is the planner's: accepted, unless no split can exist at all, or with a
  // per-stage recompute list (the planner chooses the stages).
  EXPECT_EQ(parse_config("[parallel]\nstage_layers = \"auto\"\n", "t").parallel.stage_layers.kind,
            parallel::StageLayersSpec::Kind::automatic);
  const Error aut = error_of("[parallel]\nstage_layers = \"auto\"\npipeline = 7\n");
  EXPECT_CONTAINS(aut.what(), "test.toml:2:");
  EXPECT_CONTAINS(aut.what(), "no split exists");
  EXPECT_CONTAINS(error_of("[parallel]\nstage_layers = \"auto\"\npipeline = 2\n[train]\n"
                           "global_batch = 8\nrecompute = [1, 1]\n").what(),
                  "parallel.stage_layers = \"auto\" chooses the stages");
}

TEST(Config, ScheduleKey) {
  EXPECT_EQ(parse_config("", "t").parallel.schedule, "1f1b");
  EXPECT_EQ(parse_config("[parallel]\nschedule = \"gpipe\"\n", "t").parallel.schedule, "gpipe");
  EXPECT_EQ(parse_config("", "t", {"parallel.schedule=gpipe"}).parallel.schedule, "gpipe");
  EXPECT_EQ(parse_config("", "t", {"parallel.schedule=zb-h1"}).parallel.schedule, "zb-h1");
  EXPECT_EQ(parse_config("", "t", {"parallel.schedule=zb-h2"}).parallel.schedule, "zb-h2");
  EXPECT_EQ(parse_config("", "t", {"parallel.schedule=auto"}).parallel.schedule, "auto");
  const Error e = error_of("[parallel]\nschedule = \"interleaved\"\n");
  EXPECT_CONTAINS(e.what(), "test.toml:2:");
  EXPECT_CONTAINS(e.what(), "parallel.schedule must be \"1f1b\", \"gpipe\", \"zb-h1\", \"zb-h2\" or "
                  "\"auto\", got \"interleaved\"");
  EXPECT_CONTAINS(e.hint(), "parallel.schedule = \"1f1b\"");
  EXPECT_CONTAINS(error_of("[parallel]\nschedule = \"GPipe\"\n").what(), "parallel.schedule");
  EXPECT_CONTAINS(error_of("[parallel]\nschedule = 1\n").what(),
                  "parallel.schedule must be a string, got integer");
  EXPECT_CONTAINS(error_of("", {"parallel.schedule=zb"}).what(), "--set parallel.schedule=zb");
}

}  // namespace
}  // namespace nupipe::launcher
