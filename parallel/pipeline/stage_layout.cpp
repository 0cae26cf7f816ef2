// stage_layout.cpp: parallel.stage_layers -> one StageSlice per pipeline stage, with every rule
// of a valid split and its refusal messages, and the layout table written to the log.
#include "parallel/pipeline/stage_layout.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "runtime/error.h"

namespace nupipe::parallel {
std::string format_list(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

namespace {

constexpr const char* kKey = "parallel.stage_layers";

std::vector<int> uniform_counts(int pipeline, int n_layer) {
  const int base = n_layer / pipeline, extra = n_layer % pipeline;
  std::vector<int> counts(pipeline, base);
  for (int s = pipeline - extra; s < pipeline; ++s) ++counts[s];  // remainder to the last stages
  return counts;
}

// A valid split for these degrees to show in hints: the uniform one when it is valid, else
// one block on every middle stage with empty first and last stages; none when even that fails.
std::optional<std::vector<int>> valid_example(int pipeline, int n_layer) {
  if (pipeline <= n_layer + 1) return uniform_counts(pipeline, n_layer);
  if (pipeline == n_layer + 2) {
    std::vector<int> v(pipeline, 1);
    v.front() = v.back() = 0;
    return v;
  }
  return std::nullopt;
}

std::string example_hint(int pipeline, int n_layer) {
  const std::string degrees = " for parallel.pipeline = " + std::to_string(pipeline) +
                              " and model.n_layer = " + std::to_string(n_layer);
  if (const auto ex = valid_example(pipeline, n_layer)) {
    const bool uniform = pipeline <= n_layer + 1;
    return "give one entry per stage, none negative, summing to model.n_layer, with blocks on "
           "every stage but possibly the first and the last; e.g. " +
           std::string(kKey) + " = " + format_list(*ex) +
           (uniform ? " (the uniform split" + degrees + "; \"uniform\" gives the same)"
                    : " (valid" + degrees + ")");
  }
  return "every stage but the first and the last needs at least one block, so " +
         std::to_string(n_layer) + " blocks fill at most model.n_layer + 2 = " +
         std::to_string(n_layer + 2) + " stages: lower parallel.pipeline";
}

[[noreturn]] void refuse(const std::string& what, int pipeline, int n_layer) {
  throw usage_error(what, example_hint(pipeline, n_layer));
}

// The rules of a valid split; `shown` is how the split is named in messages.
void check_counts(const std::vector<int>& counts, const std::string& shown, int pipeline,
                  int n_layer) {
  if (static_cast<int64_t>(counts.size()) != pipeline)
    refuse(shown + " has " + std::to_string(counts.size()) + " entr" +
               (counts.size() == 1 ? "y" : "ies") + " but parallel.pipeline = " +
               std::to_string(pipeline) + ": it needs one entry per pipeline stage",
           pipeline, n_layer);
  for (int s = 0; s < pipeline; ++s)
    if (counts[s] < 0)
      refuse(shown + " has a negative entry: stage " + std::to_string(s) + " is given " +
                 std::to_string(counts[s]) + " blocks",
             pipeline, n_layer);
  int64_t sum = 0;
  for (int c : counts) sum += c;
  if (sum != n_layer)
    refuse(shown + " sums to " + std::to_string(sum) + " blocks but model.n_layer = " +
               std::to_string(n_layer) + ": every block must be on exactly one stage",
           pipeline, n_layer);
  for (int s = 1; s + 1 < pipeline; ++s)
    if (counts[s] == 0)
      refuse(shown + " gives middle stage " + std::to_string(s) + " of " +
                 std::to_string(pipeline) +
                 " no blocks: only the first stage (then it holds just the embedding) or the "
                 "last (just the final LayerNorm, head and loss) may have none",
             pipeline, n_layer);
}

std::string rank_list(int stage, int data) {
  const int lo = stage * data, hi = lo + data - 1;
  if (data == 1) return std::to_string(lo);
  return std::to_string(lo) + (data == 2 ? "," : "-") + std::to_string(hi);
}

}  // namespace

std::string format_stage_layers(const StageLayersSpec& spec) {
  switch (spec.kind) {
    case StageLayersSpec::Kind::uniform: return "\"uniform\"";
    case StageLayersSpec::Kind::automatic: return "\"auto\"";
    case StageLayersSpec::Kind::explicit_list: break;
  }
  return format_list(spec.layers);
}

StageLayout layout_from_counts(const std::vector<int>& counts, int n_layer) {
  StageLayersSpec spec{StageLayersSpec::Kind::explicit_list, counts};
  return make_stage_layout(spec, static_cast<int>(counts.size()), n_layer);
}

std::vector<int> recompute_blocks(const RecomputeSpec& spec, const StageLayout& layout) {
  const std::vector<int> counts = layer_counts(layout);
  switch (spec.kind) {
    case RecomputeSpec::Kind::none: return std::vector<int>(counts.size(), 0);
    case RecomputeSpec::Kind::full: return counts;
    case RecomputeSpec::Kind::per_stage: break;
    case RecomputeSpec::Kind::automatic:
      throw usage_error("train.recompute = \"auto\" is chosen by the planner, with "
                        "parallel.stage_layers = \"auto\"",
                        "set parallel.stage_layers = \"auto\", or give train.recompute as "
                        "\"none\", \"full\" or blocks per stage");
  }
  const std::string hint = "give one entry per stage, each between 0 and the stage's blocks " +
                           format_list(counts) + ", e.g. train.recompute = " +
                           format_list(counts) + " (all: \"full\"; none: \"none\")";
  if (spec.blocks.size() != counts.size()) {
    throw usage_error("train.recompute = " + format_list(spec.blocks) + " has " +
                          std::to_string(spec.blocks.size()) + " entries but the pipeline has " +
                          std::to_string(counts.size()) + " stages",
                      hint);
  }
  for (size_t s = 0; s < counts.size(); ++s) {
    if (spec.blocks[s] < 0 || spec.blocks[s] > counts[s]) {
      throw usage_error("train.recompute = " + format_list(spec.blocks) + ": stage " +
                            std::to_string(s) + " has " + std::to_string(counts[s]) +
                            " blocks, so it cannot recompute " + std::to_string(spec.blocks[s]),
                        hint);
    }
  }
  return spec.blocks;
}

std::string format_recompute(const RecomputeSpec& spec) {
  switch (spec.kind) {
    case RecomputeSpec::Kind::none: return "\"none\"";
    case RecomputeSpec::Kind::full: return "\"full\"";
    case RecomputeSpec::Kind::automatic: return "\"auto\"";
    case RecomputeSpec::Kind::per_stage: break;
  }
  return format_list(spec.blocks);
}

StageLayout make_stage_layout(const StageLayersSpec& spec, int pipeline, int n_layer) {
  if (pipeline < 1)
    throw usage_error("parallel.pipeline must be >= 1, got " + std::to_string(pipeline),
                      "set parallel.pipeline to the number of pipeline stages (1 for none)");
  if (n_layer < 1)
    throw usage_error("model.n_layer must be >= 1, got " + std::to_string(n_layer),
                      "set model.n_layer to the number of transformer blocks");

  std::vector<int> counts;
  switch (spec.kind) {
    case StageLayersSpec::Kind::automatic:  // the planner's (parallel/plan/planner.h) to resolve
      if (pipeline > n_layer + 2)
        refuse(std::string(kKey) + " = \"auto\" with parallel.pipeline = " +
                   std::to_string(pipeline) + " and model.n_layer = " + std::to_string(n_layer) +
                   ": no split exists (middle stages need a block each)",
               pipeline, n_layer);
      throw usage_error(std::string(kKey) + " = \"auto\" is resolved by the planner",
                        "internal: call plan_best (parallel/plan/planner.h) for \"auto\"");
    case StageLayersSpec::Kind::uniform: {
      if (pipeline > n_layer + 2)  // no split exists; the uniform one is not worth listing
        refuse(std::string(kKey) + " = \"uniform\" with parallel.pipeline = " +
                   std::to_string(pipeline) + " and model.n_layer = " + std::to_string(n_layer) +
                   " leaves middle stages with no blocks: only the first and the last stage may "
                   "have none",
               pipeline, n_layer);
      counts = uniform_counts(pipeline, n_layer);
      const std::string shown = std::string(kKey) + " = \"uniform\" with parallel.pipeline = " +
                                std::to_string(pipeline) + " and model.n_layer = " +
                                std::to_string(n_layer) + " splits as " + format_list(counts) + ", which";
      check_counts(counts, shown, pipeline, n_layer);
      break;
    }
    case StageLayersSpec::Kind::explicit_list:
      counts = spec.layers;
      check_counts(counts, std::string(kKey) + " = " + format_list(counts), pipeline, n_layer);
      break;
  }

  StageLayout layout;
  layout.n_layer = n_layer;
  int begin = 0;
  for (int s = 0; s < pipeline; ++s) {
    layout.stages.push_back({begin, begin + counts[s], s == 0, s == pipeline - 1});
    begin += counts[s];
  }
  return layout;
}

std::vector<int> layer_counts(const StageLayout& layout) {
  std::vector<int> counts;
  for (const auto& st : layout.stages) counts.push_back(st.layer_end - st.layer_begin);
  return counts;
}

std::string layout_table(const StageLayout& layout, const runtime::ModelConfig& model, int data) {
  if (data < 1)
    throw usage_error("parallel.data must be >= 1, got " + std::to_string(data),
                      "set parallel.data to the number of data-parallel replicas (1 for none)");
  using Row = std::vector<std::string>;
  std::vector<Row> rows = {{"stage", "ranks", "blocks", "carries", "params", "act B/token"}};
  int64_t total_params = 0;
  for (size_t s = 0; s < layout.stages.size(); ++s) {
    const runtime::StageSlice& st = layout.stages[s];
    int64_t params = 0, act = 0;
    for (const auto& spec : runtime::stage_specs(model, st)) params += spec.numel();
    for (const auto& [name, cost] : runtime::stage_costs(model, st))
      act += cost.activation_bytes_per_token;
    total_params += params;
    std::string carries;
    if (st.embedding) carries = "embedding";
    if (st.head) {
      carries += carries.empty() ? "" : " + ";
      carries += "head + loss";
      if (model.tie_embeddings && !st.embedding) carries += " (tied wte copy)";
    }
    if (carries.empty()) carries = "-";
    rows.push_back({std::to_string(s), rank_list(static_cast<int>(s), data),
                    "[" + std::to_string(st.layer_begin) + ", " + std::to_string(st.layer_end) + ")",
                    carries, std::to_string(params), std::to_string(act)});
  }

  std::vector<size_t> width(rows[0].size(), 0);
  for (const Row& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto count = [](size_t n, const char* noun) {
    return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
  };
  std::string out = "stage layout: " + count(layout.stages.size(), "stage") + " x " +
                    count(static_cast<size_t>(data), "replica") + ", " +
                    count(static_cast<size_t>(layout.n_layer), "block") + ", split " +
                    format_list(layer_counts(layout)) + "\n";
  for (const Row& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      const bool numeric = c >= 4;  // right-align the numbers
      const std::string pad(width[c] - r[c].size(), ' ');
      line += (c ? "  " : "") + (numeric ? pad + r[c] : r[c] + (c + 1 < r.size() ? pad : ""));
    }
    out += line + "\n";
  }
  out += "parameters over all stages: " + std::to_string(total_params);
  if (model.tie_embeddings && layout.stages.size() > 1)
    out += " (the tied token embedding counted on both stages that hold a copy)";
  out += "\n";
  return out;
}

}  // namespace nupipe::parallel
