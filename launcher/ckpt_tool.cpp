// ckpt_tool.cpp: inspect and verify, on one process, without MPI collectives.
#include "launcher/ckpt_tool.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "checkpoint/catalog.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "runtime/error.h"

namespace nupipe::launcher {

namespace {

int report_problems(const std::string& dir, const std::vector<std::string>& problems) {
  std::fprintf(stderr, "error: %s is damaged or incomplete (%zu problem%s):\n", dir.c_str(),
               problems.size(), problems.size() == 1 ? "" : "s");
  for (const std::string& p : problems) std::fprintf(stderr, "  %s\n", p.c_str());
  std::fprintf(stderr, "HINT: resume from an older checkpoint (checkpoint.resume = \"auto\" falls "
               "back by itself unless checkpoint.strict = true)\n");
  return static_cast<int>(ExitCode::checkpoint);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int ckpt_verify(const std::string& dir) {
  checkpoint::require_checkpoint_path(dir, "nupipe ckpt verify {}");
  const std::vector<std::string> problems = checkpoint::verify_checkpoint(dir);
  if (!problems.empty()) return report_problems(dir, problems);
  const checkpoint::Manifest m = checkpoint::Manifest::read(dir);
  int64_t bytes = 0, regions = 0;
  for (const auto& f : m.files) bytes += f.bytes, regions += static_cast<int64_t>(f.regions.size());
  std::printf("OK: %s (step %lld): %zu file(s), %lld bytes, %lld checksummed regions intact\n",
              dir.c_str(), static_cast<long long>(m.step), m.files.size(),
              static_cast<long long>(bytes), static_cast<long long>(regions));
  return 0;
}

int ckpt_inspect(const std::string& dir, bool json) {
  checkpoint::require_checkpoint_path(
      dir, std::string("nupipe ckpt inspect ") + (json ? "--json " : "") + "{}");
  const std::vector<std::string> problems = checkpoint::verify_checkpoint(dir);
  if (!problems.empty()) return report_problems(dir, problems);
  const checkpoint::CheckpointInfo info = checkpoint::read_info(dir);
  const auto tensors = checkpoint::list_tensors(dir);
  const checkpoint::TrainingState& s = info.state;
  const runtime::ModelConfig& m = info.model;
  if (json) {
    nlohmann::json j;
    j["dir"] = dir;
    j["step"] = s.step;
    j["optimizer_steps"] = s.optimizer_steps;
    j["seed"] = s.seed;
    j["data"] = {{"name", s.data_name}, {"tokens", s.data_tokens}};
    j["tokens_seen"] = s.tokens_seen >= 0 ? nlohmann::json(s.tokens_seen) : nlohmann::json();
    j["layout"] = {{"pipeline", info.layout.pipeline}, {"data", info.layout.data},
                   {"zero", info.layout.zero}, {"stage_layers", info.layout.stage_layers}};
    j["model"] = nlohmann::json::object();
    for (const runtime::ModelKey& k : runtime::model_keys()) {
      const std::string v = k.get(m), leaf = std::string(k.name).substr(6);  // "model."
      if (k.kind == runtime::ModelKey::Kind::integer) j["model"][leaf] = std::stoll(v);
      else if (k.kind == runtime::ModelKey::Kind::boolean) j["model"][leaf] = v == "true";
      else j["model"][leaf] = v;
    }
    j["nupipe_version"] = info.nupipe_version;
    j["tensors"] = nlohmann::json::object();
    for (const auto& [name, shape] : tensors) j["tensors"][name] = shape;
    j["config"] = info.config_toml;
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("checkpoint %s\n", dir.c_str());
  std::printf("  step             %lld (optimizer steps %lld)\n", static_cast<long long>(s.step),
              static_cast<long long>(s.optimizer_steps));
  std::printf("  written by       %s, nupipe %s\n", info.layout.describe().c_str(),
              info.nupipe_version.c_str());
  const std::string family =
      m.llama() ? "llama (" + std::to_string(m.kv_heads()) + " key/value heads, SwiGLU width " +
                      std::to_string(m.ffn_width()) + "), "
                : std::string();
  std::printf("  model            %s%d layers, d_model %d, %d heads, vocab %d, seq_len %d, %s\n",
              family.c_str(), m.n_layer, m.d_model, m.n_head, m.vocab_size, m.seq_len,
              m.tie_embeddings ? "tied embeddings" : "untied embeddings");
  std::printf("  data position    step %lld of seed %llu over %s (%lld tokens)\n",
              static_cast<long long>(s.step), static_cast<unsigned long long>(s.seed),
              s.data_name.c_str(), static_cast<long long>(s.data_tokens));
  if (s.tokens_seen >= 0) {
    std::printf("  tokens seen      %lld\n", static_cast<long long>(s.tokens_seen));
  }
  int64_t params = 0;
  std::printf("  tensors (%zu):\n", tensors.size());
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (name.rfind("model/", 0) == 0) params += n;
    std::printf("    %-48s %s\n", name.c_str(), shape_text(shape).c_str());
  }
  std::printf("  parameters       %lld\n", static_cast<long long>(params));
  std::printf("  config:\n");
  size_t start = 0;
  const std::string& c = info.config_toml;
  while (start < c.size()) {
    const size_t nl = std::min(c.find('\n', start), c.size());
    std::printf("    %s\n", c.substr(start, nl - start).c_str());
    start = nl + 1;
  }
  return 0;
}

}  // namespace nupipe::launcher
