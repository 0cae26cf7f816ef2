// lr_schedule.h: linear warm-up then cosine decay to lr * min_lr_ratio, as a pure function
// of the step, so a resumed run continues on the same curve.
#pragma once

#include "optim/options.h"

namespace nupipe::optim {

// Learning rate for 0-based `step` of options.total_steps.
float learning_rate(const LrScheduleOptions& options, float peak_lr, int step);

}  // namespace nupipe::optim
