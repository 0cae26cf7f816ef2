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
  for (const runtime::ModelKey& k : runtime::model_keys()) {
    std::string a = k.get(saved), b = k.get(wanted);
    if (a != b) out.push_back({k.name, std::move(a), std::move(b)});
  }
  return out;
}

}  // namespace nupipe::checkpoint
