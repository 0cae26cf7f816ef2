// lr_schedule.cpp: warm-up + cosine learning-rate schedule.
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace nupipe::optim {

float learning_rate(const LrScheduleOptions& o, float peak_lr, int step) {
  if (step < o.warmup_steps) return peak_lr * static_cast<float>(step + 1) / o.warmup_steps;
  const float min_lr = peak_lr * o.min_lr_ratio;
  const int decay_steps = o.total_steps - o.warmup_steps;
  if (decay_steps <= 1) return peak_lr;
  const double progress =
      std::clamp(static_cast<double>(step - o.warmup_steps) / (decay_steps - 1), 0.0, 1.0);
  return min_lr + 0.5f * (peak_lr - min_lr) * static_cast<float>(1.0 + std::cos(M_PI * progress));
}

}  // namespace nupipe::optim
