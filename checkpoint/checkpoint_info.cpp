// checkpoint_info.cpp: the layout's description and the model keys a checkpoint must match.
#include "checkpoint/checkpoint_info.h"

namespace nupipe::checkpoint {

std::string WriterLayout::describe() const {
  return "pipeline " + std::to_string(pipeline) + " x data " + std::to_string(data) +
         ", stage_layers " + stage_layers + ", zero " + std::to_string(zero);
}

std::vector<ModelKeyDiff> model_differences(const runtime::ModelConfig& saved,
                                            const runtime::ModelConfig& wanted) {
  std::vector<ModelKeyDiff> out;
  auto cmp = [&](const char* key, auto a, auto b) {
    if (a != b) out.push_back({key, std::to_string(a), std::to_string(b)});
  };
  cmp("model.n_layer", saved.n_layer, wanted.n_layer);
  cmp("model.d_model", saved.d_model, wanted.d_model);
  cmp("model.n_head", saved.n_head, wanted.n_head);
  cmp("model.vocab_size", saved.vocab_size, wanted.vocab_size);
  cmp("model.seq_len", saved.seq_len, wanted.seq_len);
  if (saved.tie_embeddings != wanted.tie_embeddings) {
    out.push_back({"model.tie_embeddings", saved.tie_embeddings ? "true" : "false",
                   wanted.tie_embeddings ? "true" : "false"});
  }
  return out;
}

}  // namespace nupipe::checkpoint
