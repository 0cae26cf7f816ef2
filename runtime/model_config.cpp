// model_config.cpp: the one list of model keys a checkpoint must match (ModelKey), with how
// each is read from and written into a ModelConfig.
#include "runtime/model_config.h"

namespace nupipe::runtime {

namespace {
using Kind = ModelKey::Kind;
int to_int(const std::string& v) { return std::stoi(v); }
}  // namespace

const std::vector<ModelKey>& model_keys() {
  // n_kv_head and ffn_hidden are recorded as they run (kv_heads(), ffn_width()), so a config
  // that leaves them at 0 matches one that spells the same numbers out; a checkpoint that
  // predates them is a GPT-2 one, whose values follow from n_head and d_model.
  static const std::vector<ModelKey> keys = {
      {"model.family", Kind::text, "gpt2", [](const ModelConfig& m) { return m.family; },
       [](ModelConfig& m, const std::string& v) { m.family = v; }},
      {"model.n_layer", Kind::integer, nullptr,
       [](const ModelConfig& m) { return std::to_string(m.n_layer); },
       [](ModelConfig& m, const std::string& v) { m.n_layer = to_int(v); }},
      {"model.d_model", Kind::integer, nullptr,
       [](const ModelConfig& m) { return std::to_string(m.d_model); },
       [](ModelConfig& m, const std::string& v) { m.d_model = to_int(v); }},
      {"model.n_head", Kind::integer, nullptr,
       [](const ModelConfig& m) { return std::to_string(m.n_head); },
       [](ModelConfig& m, const std::string& v) { m.n_head = to_int(v); }},
      {"model.n_kv_head", Kind::integer, "0",
       [](const ModelConfig& m) { return std::to_string(m.kv_heads()); },
       [](ModelConfig& m, const std::string& v) { m.n_kv_head = to_int(v); }},
      {"model.ffn_hidden", Kind::integer, "0",
       [](const ModelConfig& m) { return std::to_string(m.ffn_width()); },
       [](ModelConfig& m, const std::string& v) { m.ffn_hidden = to_int(v); }},
      {"model.vocab_size", Kind::integer, nullptr,
       [](const ModelConfig& m) { return std::to_string(m.vocab_size); },
       [](ModelConfig& m, const std::string& v) { m.vocab_size = to_int(v); }},
      {"model.seq_len", Kind::integer, nullptr,
       [](const ModelConfig& m) { return std::to_string(m.seq_len); },
       [](ModelConfig& m, const std::string& v) { m.seq_len = to_int(v); }},
      {"model.lfa", Kind::boolean, "false",
       [](const ModelConfig& m) { return std::string(m.lfa ? "true" : "false"); },
       [](ModelConfig& m, const std::string& v) { m.lfa = v == "true"; }},
      {"model.tie_embeddings", Kind::boolean, nullptr,
       [](const ModelConfig& m) { return std::string(m.tie_embeddings ? "true" : "false"); },
       [](ModelConfig& m, const std::string& v) { m.tie_embeddings = v == "true"; }},
  };
  return keys;
}

}  // namespace nupipe::runtime
