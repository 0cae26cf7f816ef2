// trace.cpp: span bookkeeping and the idle-fraction measurement.
#include "parallel/pipeline/trace.h"

#include <algorithm>
#include <cstring>

namespace nupipe::parallel {

void Trace::begin_step(int step) {
  step_ = step;
  if (!keep_all_) spans_.clear();
  step_begin_ = spans_.size();
}

void Trace::add(const char* name, const char* category, double start_us, int microbatch) {
  spans_.push_back({name, category, start_us, now_us() - start_us, microbatch, step_});
}

bool is_pipeline_compute(const char* name) {
  for (const char* c : {"forward", "backward", "backward_input", "backward_weight"}) {
    if (std::strcmp(name, c) == 0) return true;
  }
  return false;
}

double Trace::idle_fraction(double start_us, double end_us) const {
  const double window = end_us - start_us;
  if (window <= 0) return 0.0;
  double busy = 0.0;
  for (size_t i = step_begin_; i < spans_.size(); ++i) {
    const Span& s = spans_[i];
    if (!is_pipeline_compute(s.name)) continue;
    const double a = std::max(s.start_us, start_us);
    const double b = std::min(s.start_us + s.duration_us, end_us);
    busy += std::max(0.0, b - a);
  }
  return std::clamp(1.0 - busy / window, 0.0, 1.0);
}

}  // namespace nupipe::parallel
