// report.cpp: tables, log lines and metrics records.
#include "launcher/report.h"

#include <cmath>
#include <cstdio>

#include "launcher/clock_text.h"

namespace nupipe::launcher {

using runtime::MemTag;

std::string format_duration(double seconds) {
  const int s = static_cast<int>(std::lround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%dh%02dm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%dm%02ds", s / 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%ds", s);
  return buf;
}

std::string format_rate(double per_s) {
  char buf[32];
  if (per_s >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", per_s / 1e6);
  else if (per_s >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fk", per_s / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", per_s);
  return buf;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = std::min(text.find('\n', start), text.size());
    if (end > start) lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

void log_lines(spdlog::logger& log, const std::string& text, const std::string& indent) {
  for (const std::string& line : split_lines(text)) log.info("{}{}", indent, line);
}

void log_memory_table(spdlog::logger& log, const runtime::LayerCost& total,
                      const parallel::StageMemory& predicted, const runtime::Backend& be,
                      int64_t tokens_per_micro, const optim::ZeroOptimizer& optimizer) {
  const auto& mem = be.memory();
  const optim::Shard& shard = optimizer.shard();
  log.info("memory of rank 0 (stage 0; expected from layer cost descriptors, allocator-accounted):");
  log.info("  {:<12} {:>12}", "params", runtime::format_bytes(mem.current(MemTag::params)));
  log.info("  {:<12} {:>12}{}", "grads", runtime::format_bytes(mem.current(MemTag::grads)),
           optimizer.sharded() && shard.numel() < optimizer.grad_buffer_bytes() / 4
               ? fmt::format("  (flat buffer + ZeRO-1's reduce-scattered shard, {} elements)",
                             shard.numel())
               : std::string());
  log.info("  {:<12} {:>12}  {}", "optimizer", runtime::format_bytes(mem.current(MemTag::optimizer)),
           optimizer.sharded()
               ? fmt::format("(ZeRO-1: AdamW state for flat elements [{}, {}) of {} padded)",
                             shard.begin, shard.end, optimizer.grad_buffer_bytes() / 4)
               : std::string("(AdamW state replicated on every data-parallel rank)"));
  log.info("  {:<12} {:>12}  ({} B/token x {} tokens per microbatch)", "activations",
           runtime::format_bytes(static_cast<double>(total.activation_bytes_per_token) *
                                 tokens_per_micro),
           total.activation_bytes_per_token, tokens_per_micro);
  log.info("  {:<12} {:>12}  (peak over a step: the executor's buffers and backward's)",
           "workspace", runtime::format_bytes(predicted.workspace));
  if (predicted.loss_workspace > 0) {
    log.info("  {:<12} {:>12}  (the loss chunk's buffers)", "loss ws",
             runtime::format_bytes(predicted.loss_workspace));
  }
}

nlohmann::json metrics_record(const StepStats& s, int64_t tokens_per_step,
                              double flops_per_token, int64_t tokens_seen,
                              std::chrono::system_clock::time_point at) {
  nlohmann::json rec = {{"step", s.step + 1},
                        {"timestamp", iso8601_utc(at)},
                        {"tokens_seen", tokens_seen},
                        {"loss", s.loss},
                        {"lr", s.lr},
                        {"grad_norm", s.grad_norm},
                        {"tokens_per_s", tokens_per_step / s.seconds},
                        {"step_ms", s.seconds * 1e3},
                        {"bubble_fraction", s.bubble},
                        {"gflops", flops_per_token * tokens_per_step / s.seconds / 1e9}};
  if (s.val_loss >= 0) rec["val_loss"] = s.val_loss;
  return rec;
}

std::string step_line(const StepStats& s, int total_steps, int64_t tokens_per_step,
                      bool pipelined, int steps_run, double elapsed_s) {
  const double eta = elapsed_s / std::max(steps_run, 1) * (total_steps - s.step - 1);
  return fmt::format(
      "step {:>{}}/{} | loss {:.4f}{} | lr {:.2e} | gnorm {:.3f} | {} tok/s | {:.0f} ms/step{} | "
      "elapsed {} | ETA {}",
      s.step + 1, std::to_string(total_steps).size(), total_steps, s.loss,
      s.val_loss >= 0 ? fmt::format(" | val {:.4f}", s.val_loss) : std::string(), s.lr,
      s.grad_norm, format_rate(tokens_per_step / s.seconds), s.seconds * 1e3,
      pipelined ? fmt::format(" | bubble {:.0f}%", 100.0 * s.bubble) : std::string(),
      format_duration(elapsed_s), format_duration(eta));
}

}  // namespace nupipe::launcher
