// checkpoint_info.h: what a checkpoint says about itself besides its tensors, stored as
// attributes of state.h5's root: the training state, the model keys that must match to load
// it, the layout that wrote it, the effective config and versions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/training_state.h"
#include "runtime/model_config.h"

namespace nupipe::checkpoint {

struct WriterLayout {
  int pipeline = 1;
  int data = 1;
  int zero = 0;
  std::string stage_layers;  // "[1, 3]"
  std::string describe() const;  // "pipeline 2 x data 2, stage_layers [1, 3], zero 1"
};

struct CheckpointInfo {
  TrainingState state;
  runtime::ModelConfig model;  // the shape keys below must match to load
  WriterLayout layout;
  std::string config_toml;     // the effective config of the run that wrote it
  std::string nupipe_version;
};

// One model key that must be equal to load a checkpoint ("model.n_layer").
struct ModelKeyDiff {
  std::string key;
  std::string saved;
  std::string wanted;
};
// The shape keys (runtime::model_keys(): family, n_layer, d_model, n_head, n_kv_head,
// ffn_hidden, vocab_size, seq_len, tie_embeddings) that differ.
std::vector<ModelKeyDiff> model_differences(const runtime::ModelConfig& saved,
                                            const runtime::ModelConfig& wanted);

}  // namespace nupipe::checkpoint
