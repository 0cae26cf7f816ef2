// trace.h: spans of one rank's work (forward, backward, send, recv, all-reduce, optimizer)
// with wall-clock times, for the Chrome trace and for the measured pipeline bubble.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace nupipe::parallel {

// A span of a pipeline pass: forward, backward, backward_input (B) or backward_weight (W).
bool is_pipeline_compute(const char* name);

class Trace {
 public:
  struct Span {
    const char* name;  // "forward", "backward", "send", "recv", "all-reduce", "optimizer"
    const char* category;  // "compute" or "comm"
    double start_us;
    double duration_us;
    int microbatch;  // -1 when not tied to one
    int step;
  };

  // keep_all: spans are kept for the whole run (for trace.json); otherwise only the
  // current step's are, enough to measure it.
  explicit Trace(bool keep_all) : keep_all_(keep_all), origin_(Clock::now()) {}

  using Clock = std::chrono::steady_clock;
  // Times count from `origin` (before the first span). Ranks that take the same origin share
  // one time axis in trace.json (launcher/trace_file.h: align_trace_clocks).
  void set_origin(Clock::time_point origin) { origin_ = origin; }

  double now_us() const {
    return std::chrono::duration<double, std::micro>(Clock::now() - origin_).count();
  }
  void begin_step(int step);
  void add(const char* name, const char* category, double start_us, int microbatch = -1);
  // Idle share of [start_us, end_us]: 1 - (forward, backward, B and W time) / window.
  double idle_fraction(double start_us, double end_us) const;
  const std::vector<Span>& spans() const { return spans_; }

  // Records a span from construction to destruction.
  class Scope {
   public:
    Scope(Trace& trace, const char* name, const char* category, int microbatch = -1)
        : trace_(trace), name_(name), category_(category), mb_(microbatch),
          start_(trace.now_us()) {}
    ~Scope() { trace_.add(name_, category_, start_, mb_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Trace& trace_;
    const char* name_;
    const char* category_;
    int mb_;
    double start_;
  };

 private:
  bool keep_all_;
  Clock::time_point origin_;
  std::vector<Span> spans_;
  size_t step_begin_ = 0;  // index of the current step's first span
  int step_ = 0;
};

}  // namespace nupipe::parallel
