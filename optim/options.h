// options.h: optimizer options ([optim] in the config): AdamW, the LR schedule, clipping.
#pragma once

namespace nupipe::optim {

struct AdamWOptions {
  float lr = 1e-3f;            // peak learning rate
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;   // applied to tensors flagged `decay` only
};

struct LrScheduleOptions {
  int warmup_steps = 0;        // linear warm-up from 0 to lr
  float min_lr_ratio = 0.1f;   // cosine decays to lr * min_lr_ratio at the last step
  int total_steps = 1;         // set from train.steps
};

struct ClipOptions {
  float max_norm = 1.0f;       // global gradient-norm clip; 0 disables
};

}  // namespace nupipe::optim
