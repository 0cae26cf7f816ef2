// sample_tool.cpp: `nupipe sample`: find and verify the checkpoint, rebuild its model from
// its config, load the weights, choose the tokenizer, generate, decode.
#include "launcher/sample_tool.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "checkpoint/catalog.h"
#include "checkpoint/h5_tensors.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/writer.h"
#include "launcher/config.h"
#include "runtime/backend.h"
#include "runtime/data/token_meta.h"
#include "runtime/data/tokenizer.h"
#include "runtime/error.h"
#include "runtime/generate.h"

namespace nupipe::launcher {

namespace {

namespace fs = std::filesystem;

// A checkpoint directory; a run directory or a directory of checkpoints stands for its
// newest committed checkpoint.
std::string resolve_checkpoint(const std::string& path) {
  const checkpoint::PathProblem p = checkpoint::check_checkpoint_path(path);
  if (p.what.empty()) return path;
  std::error_code ec;
  if (fs::is_directory(path, ec) && !p.suggestion.empty()) {
    std::fprintf(stderr, "sample: %s holds checkpoints; using the newest, %s\n", path.c_str(),
                 p.suggestion.c_str());
    return p.suggestion;
  }
  checkpoint::require_checkpoint_path(path, "nupipe sample {}");
  return path;  // not reached
}

struct ChosenTokenizer {
  runtime::TokenizerKind kind;
  std::string why;
};

ChosenTokenizer choose_tokenizer(const SampleCommand& cmd, const Config& cfg, int vocab) {
  using runtime::TokenizerKind;
  if (!cmd.tokenizer.empty()) return {runtime::parse_tokenizer(cmd.tokenizer), "--tokenizer"};
  const std::string& train = cfg.data.train;
  if (train == "synthetic") {
    return {TokenizerKind::byte, "data.train = \"synthetic\", whose tokens are ids, not text: "
                                 "--ids shows them"};
  }
  if (const auto meta = runtime::read_token_meta(train)) {
    return {runtime::parse_tokenizer(meta->tokenizer), runtime::token_meta_path(train)};
  }
  if (vocab == 256) return {TokenizerKind::byte, "model.vocab_size = 256"};
  if (vocab >= runtime::kGpt2Vocab) {
    return {TokenizerKind::gpt2, "model.vocab_size = " + std::to_string(vocab) + " (" +
                                     runtime::token_meta_path(train) +
                                     " does not say; --tokenizer chooses)"};
  }
  throw usage_error("no tokenizer is known for this model: data.train " + train +
                        " has no " + runtime::token_meta_path(train) + " and model.vocab_size " +
                        std::to_string(vocab) + " is neither 256 (byte) nor >= 50257 (gpt2)",
                    "give --tokenizer byte or --tokenizer gpt2");
}

}  // namespace

int run_sample(const SampleCommand& cmd) {
  if (cmd.tokens < 0) {
    throw usage_error("--tokens " + std::to_string(cmd.tokens) + " is negative",
                      "give the number of tokens to generate, e.g. --tokens 100");
  }
  if (!(cmd.temperature >= 0.0) || !std::isfinite(cmd.temperature)) {
    char t[32];
    std::snprintf(t, sizeof(t), "%g", cmd.temperature);
    throw usage_error("--temperature " + std::string(t) + " must be a finite number >= 0",
                      "0 is greedy (the most likely token), 1 samples the model's distribution");
  }
  if (cmd.top_k < 0) {
    throw usage_error("--top-k " + std::to_string(cmd.top_k) + " is negative",
                      "0 samples among all tokens, k among the k most likely");
  }
  const std::string dir = resolve_checkpoint(cmd.checkpoint);
  const std::vector<std::string> problems = checkpoint::verify_checkpoint(dir);
  if (!problems.empty()) {
    std::string what = dir + " is damaged or incomplete (" + std::to_string(problems.size()) +
                       " problem" + (problems.size() == 1 ? "" : "s") + "):";
    for (const std::string& p : problems) what += "\n  " + p;
    throw checkpoint_error(what, "sample from another checkpoint of the run (`nupipe ckpt "
                                 "verify DIR` checks one)");
  }
  const checkpoint::CheckpointInfo info = checkpoint::read_info(dir);
  const Config cfg = cmd.config_path.empty()
                         ? parse_config(info.config_toml, dir + " (its recorded config)",
                                        cmd.overrides)
                         : load_config(cmd.config_path, cmd.overrides);
  runtime::ModelConfig mc = model_that_runs(cfg);
  const auto diffs = checkpoint::model_differences(info.model, mc);
  if (!diffs.empty()) {
    std::string what = "checkpoint " + dir + " holds another model than the config's:";
    for (const auto& d : diffs) what += " " + d.key + " " + d.saved + " (config: " + d.wanted + ")";
    throw checkpoint_error(what, "leave out --config (the checkpoint's own config is used), or "
                                 "give the config of the run that wrote it");
  }
  // The checkpoint holds the fp32 master weights: generate with them exactly.
  mc.dtype = runtime::DType::f32;
  mc.loss_chunk = 0;

  const ChosenTokenizer chosen = choose_tokenizer(cmd, cfg, mc.vocab_size);
  const int tok_vocab = runtime::tokenizer_vocab(chosen.kind);
  if (tok_vocab > mc.vocab_size) {
    throw usage_error("tokenizer " + std::string(runtime::tokenizer_name(chosen.kind)) + " has " +
                          std::to_string(tok_vocab) + " tokens, more than the model's vocab_size " +
                          std::to_string(mc.vocab_size),
                      "use the tokenizer the model was trained with (--tokenizer)");
  }
  std::unique_ptr<runtime::Tokenizer> tok = runtime::Tokenizer::open(chosen.kind);
  std::vector<int32_t> prompt;
  {
    if (tok->needs_utf8() && runtime::first_invalid_utf8(cmd.prompt) >= 0) {
      throw usage_error("--prompt is not valid UTF-8", "give the prompt as UTF-8 text");
    }
    std::vector<uint16_t> ids;
    tok->encode(cmd.prompt, ids);
    prompt.assign(ids.begin(), ids.end());
  }
  if (prompt.empty()) {
    if (chosen.kind != runtime::TokenizerKind::gpt2) {
      throw usage_error("--prompt is empty: the model needs at least one token to continue",
                        "give --prompt TEXT");
    }
    prompt.push_back(runtime::kGpt2EndOfText);  // GPT-2's start of a document
  }
  if (static_cast<int64_t>(prompt.size()) > mc.seq_len) {
    std::fprintf(stderr,
                 "sample: note: the prompt has %zu tokens, more than seq_len %d; the model sees "
                 "its last %d (the whole prompt is printed)\n",
                 prompt.size(), mc.seq_len, mc.seq_len);
  }

  std::unique_ptr<runtime::Backend> backend = runtime::make_backend(cfg.runtime.device);
  backend->set_threads(cfg.runtime.threads > 0
                           ? cfg.runtime.threads
                           : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  runtime::StageModel model(*backend, mc, runtime::StageSlice::whole(mc));
  {
    checkpoint::H5TensorReader r(dir + "/" + checkpoint::kStateFileName);
    for (const runtime::TensorSpec& s : model.params().specs()) {
      std::vector<float> host(static_cast<size_t>(s.numel()));
      r.read_into(checkpoint::model_dataset(s.name), host.data(), s.shape);
      runtime::Tensor t = model.params().param(s.name);
      runtime::from_host(t, host);
    }
  }

  runtime::SampleOptions so;
  so.tokens = cmd.tokens;
  so.temperature = cmd.temperature;
  so.top_k = cmd.top_k;
  so.seed = cmd.seed;
  char how[96];
  if (cmd.temperature == 0.0) {
    std::snprintf(how, sizeof(how), "greedy (temperature 0)");
  } else if (cmd.top_k > 0) {
    std::snprintf(how, sizeof(how), "temperature %g, top-k %d", cmd.temperature, cmd.top_k);
  } else {
    std::snprintf(how, sizeof(how), "temperature %g", cmd.temperature);
  }
  std::fprintf(stderr,
               "sample: %s (step %lld), tokenizer %s (by %s), %zu prompt token%s, %d new, %s, "
               "seed %llu\n",
               dir.c_str(), static_cast<long long>(info.state.step),
               runtime::tokenizer_name(chosen.kind), chosen.why.c_str(), prompt.size(),
               prompt.size() == 1 ? "" : "s", cmd.tokens, how,
               static_cast<unsigned long long>(cmd.seed));
  const std::vector<int32_t> generated = runtime::generate(model, prompt, so);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  if (cmd.ids) {
    std::string line;
    for (size_t i = 0; i < all.size(); ++i) line += (i ? " " : "") + std::to_string(all[i]);
    std::printf("%s\n", line.c_str());
  } else {
    const std::string text = tok->decode(all);
    std::fwrite(text.data(), 1, text.size(), stdout);
    if (text.empty() || text.back() != '\n') std::printf("\n");
  }
  return 0;
}

}  // namespace nupipe::launcher
