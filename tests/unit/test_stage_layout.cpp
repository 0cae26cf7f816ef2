// test_stage_layout.cpp: building and validating the pipeline stage layout: the uniform split
// (remainder to the last stages), explicit lists, every refusal with its key and hint, the table.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "parallel/pipeline/stage_layout.h"
#include "runtime/error.h"
#include "runtime/layers/block.h"
#include "runtime/layers/embedding.h"

namespace nupipe::parallel {
namespace {

using Kind = StageLayersSpec::Kind;

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

StageLayersSpec uniform() { return {Kind::uniform, {}}; }
StageLayersSpec list(std::vector<int> layers) { return {Kind::explicit_list, std::move(layers)}; }

// Slices contiguous from 0 to n_layer, embedding on the first stage only, head on the last only.
void expect_well_formed(const StageLayout& layout, int pipeline, int n_layer) {
  ASSERT_EQ(layout.stages.size(), static_cast<size_t>(pipeline));
  EXPECT_EQ(layout.n_layer, n_layer);
  EXPECT_EQ(layout.stages.front().layer_begin, 0);
  EXPECT_EQ(layout.stages.back().layer_end, n_layer);
  for (int s = 0; s < pipeline; ++s) {
    const auto& st = layout.stages[s];
    EXPECT_LE(st.layer_begin, st.layer_end) << "stage " << s;
    if (s + 1 < pipeline) {
      EXPECT_EQ(st.layer_end, layout.stages[s + 1].layer_begin) << "stage " << s;
    }
    EXPECT_EQ(st.embedding, s == 0) << "stage " << s;
    EXPECT_EQ(st.head, s == pipeline - 1) << "stage " << s;
    if (s > 0 && s + 1 < pipeline) {
      EXPECT_GT(st.layer_end, st.layer_begin) << "middle stage " << s;
    }
  }
}

// The usage error make_stage_layout must raise; code and a non-empty hint are checked.
Error error_of(const StageLayersSpec& spec, int pipeline, int n_layer) {
  try {
    make_stage_layout(spec, pipeline, n_layer);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    return e;
  }
  ADD_FAILURE() << "accepted " << format_stage_layers(spec) << " for pipeline " << pipeline
                << ", n_layer " << n_layer;
  return Error(ExitCode::ok, "(no error)");
}

// The list a hint offers ("parallel.stage_layers = [a, b, ...]"), if any.
std::vector<int> list_in_hint(const std::string& hint) {
  const std::string marker = "parallel.stage_layers = [";
  const size_t at = hint.find(marker);
  std::vector<int> out;
  if (at == std::string::npos) return out;
  const char* p = hint.c_str() + at + marker.size();
  while (*p && *p != ']') {
    char* end = nullptr;
    out.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  return out;
}

TEST(StageLayout, UniformGivesTheRemainderToTheLastStages) {
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 4, 10)), (std::vector<int>{2, 2, 3, 3}));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 3, 7)), (std::vector<int>{2, 2, 3}));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 8, 24)), std::vector<int>(8, 3));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 5, 11)), (std::vector<int>{2, 2, 2, 2, 3}));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 1, 4)), (std::vector<int>{4}));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 4, 4)), (std::vector<int>{1, 1, 1, 1}));
  // One stage more than blocks: the first stage holds only the embedding.
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 5, 4)), (std::vector<int>{0, 1, 1, 1, 1}));
  EXPECT_EQ(layer_counts(make_stage_layout(uniform(), 2, 1)), (std::vector<int>{0, 1}));

  const StageLayout l = make_stage_layout(uniform(), 4, 10);
  expect_well_formed(l, 4, 10);
  EXPECT_EQ(l.stages[2].layer_begin, 4);
  EXPECT_EQ(l.stages[2].layer_end, 7);
}

TEST(StageLayout, UniformIsBalancedAndWellFormedForEveryValidShape) {
  for (int n_layer = 1; n_layer <= 13; ++n_layer) {
    for (int pipeline = 1; pipeline <= n_layer + 1; ++pipeline) {
      SCOPED_TRACE("pipeline " + std::to_string(pipeline) + ", n_layer " + std::to_string(n_layer));
      const StageLayout l = make_stage_layout(uniform(), pipeline, n_layer);
      expect_well_formed(l, pipeline, n_layer);
      const std::vector<int> c = layer_counts(l);
      for (size_t s = 1; s < c.size(); ++s) {
        EXPECT_GE(c[s], c[s - 1]);      // never more on an earlier stage
        EXPECT_LE(c[s] - c[0], 1);      // balanced to within one block
      }
      EXPECT_EQ(c.front(), n_layer / pipeline);
      EXPECT_EQ(c.back(), (n_layer + pipeline - 1) / pipeline);
      // The same split written out is accepted and gives the same slices.
      const StageLayout same = make_stage_layout(list(c), pipeline, n_layer);
      ASSERT_EQ(same.stages.size(), l.stages.size());
      for (size_t s = 0; s < c.size(); ++s) {
        EXPECT_EQ(same.stages[s].layer_begin, l.stages[s].layer_begin);
        EXPECT_EQ(same.stages[s].layer_end, l.stages[s].layer_end);
      }
    }
  }
}

TEST(StageLayout, ExplicitListTakenExactly) {
  // The Yuan 2.0 hand-made split of 24 layers over 8 stages.
  const std::vector<int> yuan = {2, 2, 3, 3, 4, 4, 4, 2};
  const StageLayout l = make_stage_layout(list(yuan), 8, 24);
  expect_well_formed(l, 8, 24);
  EXPECT_EQ(layer_counts(l), yuan);
  EXPECT_EQ(l.stages[4].layer_begin, 10);
  EXPECT_EQ(l.stages[4].layer_end, 14);

  const StageLayout one = make_stage_layout(list({4}), 1, 4);
  expect_well_formed(one, 1, 4);
  EXPECT_TRUE(one.stages[0].embedding && one.stages[0].head);

  // Empty first (embedding only) and/or last (head and loss only) stages are allowed.
  for (const std::vector<int>& ok : {std::vector<int>{0, 4}, {4, 0}, {0, 2, 2, 0}, {0, 1, 1, 1, 1, 0}}) {
    SCOPED_TRACE(format_stage_layers(list(ok)));
    const int pipeline = static_cast<int>(ok.size());
    const StageLayout e = make_stage_layout(list(ok), pipeline, 4);
    expect_well_formed(e, pipeline, 4);
    EXPECT_EQ(layer_counts(e), ok);
  }
  const StageLayout head_only = make_stage_layout(list({4, 0}), 2, 4);
  EXPECT_EQ(head_only.stages[1].layer_begin, 4);
  EXPECT_EQ(head_only.stages[1].layer_end, 4);
  EXPECT_TRUE(head_only.stages[1].head);
  EXPECT_FALSE(head_only.stages[1].embedding);
}

TEST(StageLayout, WrongLengthRefused) {
  const Error e = error_of(list({1, 3}), 4, 4);
  EXPECT_CONTAINS(e.what(), "parallel.stage_layers = [1, 3]");
  EXPECT_CONTAINS(e.what(), "2 entries");
  EXPECT_CONTAINS(e.what(), "parallel.pipeline = 4");
  EXPECT_CONTAINS(e.hint(), "parallel.stage_layers = [1, 1, 1, 1]");
  EXPECT_CONTAINS(e.hint(), "uniform");
  EXPECT_CONTAINS(error_of(list({}), 1, 4).what(), "0 entries");
  EXPECT_CONTAINS(error_of(list({2, 2, 0}), 2, 4).what(), "3 entries");
}

TEST(StageLayout, WrongSumRefused) {
  const Error e = error_of(list({1, 1, 1}), 3, 4);
  EXPECT_CONTAINS(e.what(), "parallel.stage_layers = [1, 1, 1]");
  EXPECT_CONTAINS(e.what(), "sums to 3");
  EXPECT_CONTAINS(e.what(), "model.n_layer = 4");
  EXPECT_CONTAINS(e.hint(), "[1, 1, 2]");
  EXPECT_CONTAINS(error_of(list({3, 3}), 2, 4).what(), "sums to 6");
  // A single stage must hold every block.
  const Error single = error_of(list({0}), 1, 4);
  EXPECT_CONTAINS(single.what(), "sums to 0");
  EXPECT_CONTAINS(single.hint(), "parallel.stage_layers = [4]");
  EXPECT_CONTAINS(error_of(list({3}), 1, 4).what(), "sums to 3");
}

TEST(StageLayout, NegativeEntryRefused) {
  const Error e = error_of(list({3, -1, 2}), 3, 4);  // sums to 4: only the sign is wrong
  EXPECT_CONTAINS(e.what(), "parallel.stage_layers = [3, -1, 2]");
  EXPECT_CONTAINS(e.what(), "negative");
  EXPECT_CONTAINS(e.what(), "stage 1");
  EXPECT_CONTAINS(error_of(list({-1, 5}), 2, 4).what(), "stage 0");
}

TEST(StageLayout, EmptyMiddleStageRefused) {
  const Error e = error_of(list({2, 0, 2}), 3, 4);
  EXPECT_CONTAINS(e.what(), "parallel.stage_layers = [2, 0, 2]");
  EXPECT_CONTAINS(e.what(), "middle stage 1");
  EXPECT_CONTAINS(e.what(), "no blocks");
  EXPECT_CONTAINS(e.hint(), "[1, 1, 2]");
  EXPECT_CONTAINS(error_of(list({0, 0, 4}), 3, 4).what(), "middle stage 1");
  EXPECT_CONTAINS(error_of(list({1, 3, 0, 0}), 4, 4).what(), "middle stage 2");
}

TEST(StageLayout, UniformWithAnEmptyMiddleStageRefusedNotRepaired) {
  // Remainder to the last stages: 6 stages over 4 blocks would leave stages 0 and 1 empty.
  const Error e = error_of(uniform(), 6, 4);
  EXPECT_CONTAINS(e.what(), "parallel.stage_layers = \"uniform\"");
  EXPECT_CONTAINS(e.what(), "parallel.pipeline = 6");
  EXPECT_CONTAINS(e.what(), "model.n_layer = 4");
  EXPECT_CONTAINS(e.what(), "[0, 0, 1, 1, 1, 1]");
  EXPECT_CONTAINS(e.what(), "middle stage 1");
  EXPECT_CONTAINS(e.hint(), "parallel.stage_layers = [0, 1, 1, 1, 1, 0]");
  // Beyond n_layer + 2 stages no split exists at all.
  const Error none = error_of(uniform(), 7, 4);
  EXPECT_CONTAINS(none.what(), "middle stage");
  EXPECT_CONTAINS(none.hint(), "lower parallel.pipeline");
  EXPECT_CONTAINS(none.hint(), "6 stages");
  EXPECT_CONTAINS(error_of(list({0, 1, 1, 1, 1, 0, 0}), 7, 4).hint(), "lower parallel.pipeline");
  // A mistyped degree is refused without building (or printing) a list of that length.
  const Error huge = error_of(uniform(), 1000000000, 4);
  EXPECT_CONTAINS(huge.what(), "parallel.pipeline = 1000000000");
  EXPECT_LT(std::string(huge.what()).size(), 400u);
}

TEST(StageLayout, EveryHintedSplitIsAccepted) {
  const std::vector<std::pair<StageLayersSpec, std::pair<int, int>>> refused = {
      {list({1, 3}), {4, 4}},       {list({1, 1, 1}), {3, 4}},  {list({3, -1, 2}), {3, 4}},
      {list({2, 0, 2}), {3, 4}},    {uniform(), {6, 4}},        {list({0}), {1, 4}},
      {list({9, 9, 9}), {4, 10}},   {list({1, 1}), {5, 3}},     {list({24}), {8, 24}}};
  for (const auto& [spec, shape] : refused) {
    const auto [pipeline, n_layer] = shape;
    SCOPED_TRACE(format_stage_layers(spec) + " pipeline " + std::to_string(pipeline));
    const Error e = error_of(spec, pipeline, n_layer);
    const std::vector<int> hinted = list_in_hint(e.hint());
    ASSERT_FALSE(hinted.empty()) << e.hint();
    EXPECT_NO_THROW(make_stage_layout(list(hinted), pipeline, n_layer)) << e.hint();
  }
}

// "auto" is resolved by the planner (parallel/plan/planner.h), never here; but a split that cannot
// exist is said so.
TEST(StageLayout, AutoIsThePlanners) {
  EXPECT_CONTAINS(error_of({Kind::automatic, {}}, 4, 10).what(), "resolved by the planner");
  EXPECT_CONTAINS(error_of({Kind::automatic, {}}, 7, 4).what(), "no split exists");
  EXPECT_EQ(layer_counts(layout_from_counts({0, 2, 2}, 4)), (std::vector<int>{0, 2, 2}));
}

TEST(StageLayout, DegreesBelowOneRefused) {
  EXPECT_CONTAINS(error_of(uniform(), 0, 4).what(), "parallel.pipeline must be >= 1, got 0");
  EXPECT_CONTAINS(error_of(list({}), -2, 4).what(), "parallel.pipeline");
  EXPECT_CONTAINS(error_of(uniform(), 1, 0).what(), "model.n_layer must be >= 1, got 0");
}

TEST(StageLayout, FormatsTheSpecAsToml) {
  EXPECT_EQ(format_stage_layers(uniform()), "\"uniform\"");
  EXPECT_EQ(format_stage_layers({Kind::automatic, {}}), "\"auto\"");
  EXPECT_EQ(format_stage_layers(list({2, 2, 3, 3})), "[2, 2, 3, 3]");
  EXPECT_EQ(format_stage_layers(list({})), "[]");
}

TEST(StageLayout, TableShowsRanksBlocksCarriesParamsAndActivations) {
  runtime::ModelConfig m;
  m.n_layer = 10;
  m.d_model = 32;
  m.n_head = 4;
  m.vocab_size = 100;
  m.seq_len = 16;
  m.tie_embeddings = true;
  const StageLayout l = make_stage_layout(uniform(), 4, 10);
  const std::string t = layout_table(l, m, 2);
  SCOPED_TRACE(t);
  for (const char* range : {"[0, 2)", "[2, 4)", "[4, 7)", "[7, 10)"}) EXPECT_CONTAINS(t, range);
  for (const char* ranks : {" 0,1 ", " 2,3 ", " 4,5 ", " 6,7 "}) EXPECT_CONTAINS(t, ranks);
  EXPECT_CONTAINS(t, "[2, 2, 3, 3]");
  EXPECT_CONTAINS(t, "embedding");
  EXPECT_CONTAINS(t, "head");
  EXPECT_CONTAINS(t, "tied");

  // Parameters, counted independently of stage_specs: a GPT-2 block is 12 C^2 + 13 C elements;
  // the embedding (V + T) C; the head its LayerNorm (2 C) and, tied, its copy of wte (V C).
  const int64_t C = m.d_model, V = m.vocab_size, T = m.seq_len;
  const int64_t block = 12 * C * C + 13 * C;
  const int64_t first = (V + T) * C + 2 * block, last = 3 * block + 2 * C + V * C;
  EXPECT_CONTAINS(t, " " + std::to_string(first) + " ");
  EXPECT_CONTAINS(t, " " + std::to_string(2 * block) + " ");
  EXPECT_CONTAINS(t, " " + std::to_string(3 * block) + " ");
  EXPECT_CONTAINS(t, " " + std::to_string(last) + " ");
  EXPECT_CONTAINS(t, "parameters over all stages: " +
                         std::to_string(first + 2 * block + 3 * block + last));
  // Activation bytes per token: the blocks' descriptors, plus the embedding output on stage 0.
  const int64_t act = runtime::Block::cost(m).activation_bytes_per_token;
  EXPECT_CONTAINS(t, " " + std::to_string(2 * act + runtime::Embedding::cost(m).activation_bytes_per_token) + "\n");
  EXPECT_CONTAINS(t, " " + std::to_string(3 * act) + "\n");

  // Four replicas per stage: rank ranges; one replica: the stage's own rank.
  const std::string t4 = layout_table(l, m, 4);
  EXPECT_CONTAINS(t4, " 0-3 ");
  EXPECT_CONTAINS(t4, " 12-15 ");
  const std::string t1 = layout_table(make_stage_layout(list({0, 10}), 2, 10), m, 1);
  EXPECT_CONTAINS(t1, "[0, 0)");
  EXPECT_CONTAINS(t1, "[0, 10)");
  m.tie_embeddings = false;
  const std::string whole = layout_table(make_stage_layout(uniform(), 1, 10), m, 1);
  EXPECT_CONTAINS(whole, "embedding + head");
  EXPECT_EQ(whole.find("tied"), std::string::npos) << whole;
  EXPECT_CONTAINS(whole, " " + std::to_string((V + T) * C + 10 * block + 2 * C + V * C) + " ");
}

}  // namespace
}  // namespace nupipe::parallel
