// loss_bench.cpp: the LM head + cross-entropy (forward and backward) unchunked vs chunked, side
// by side in one run on the cpu backend: peak loss-workspace bytes and median time per call.
//   loss_bench [--vocab 50257] [--d-model 768] [--tokens 8192] [--chunks 0,4096,1024,256]
//              [--reps 3] [--threads N] [--eval]
// Repetitions are interleaved (every chunk size once per round) and ratios are taken within a
// round, so drift in the machine's speed hits both sides alike; the first round is warm-up and
// not counted. Prints a table, then one `loss_bench chunk=K ...` line per chunk for scripts.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "runtime/backend.h"
#include "runtime/layers/lm_head.h"

namespace rt = nupipe::runtime;

namespace {

struct Column {
  int chunk = 0;
  int64_t peak_loss_ws = 0;   // MemTag::loss_workspace, peak during one call
  int64_t peak_total = 0;     // every tag, peak during one call, above what was live before
  std::vector<double> wall_s, cpu_s, eval_s;  // per timed round
  double loss = 0.0;
};

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
double minimum(const std::vector<double>& v) {
  return v.empty() ? NAN : *std::min_element(v.begin(), v.end());
}
// Median over rounds of a[r] / b[r]: each round's columns ran back to back, so a slow spell
// of the machine hits both sides of a ratio alike.
double paired_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(a[i] / b[i]);
  return median(r);
}

double cpu_seconds() {  // user + system time of every thread of this process
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nupipe chunked loss: memory and time of the LM head + cross-entropy vs chunk"};
  int vocab = 50257, d_model = 768, reps = 3;
  int64_t tokens = 8192;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> chunks = {0, 4096, 1024, 256};
  bool eval = false;
  app.add_option("--vocab", vocab, "vocabulary size V")->check(CLI::PositiveNumber);
  app.add_option("--d-model", d_model, "hidden size C")->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "tokens per call (micro_batch x seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_option("--chunks", chunks, "loss_chunk values; 0 = unchunked (the reference column)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option("--reps", reps, "timed rounds after one warm-up round")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "cpu backend threads (default: all hardware threads)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--eval", eval, "also time the forward-only (evaluation) path");
  CLI11_PARSE(app, argc, argv);
  if (std::find(chunks.begin(), chunks.end(), 0) == chunks.end()) chunks.insert(chunks.begin(), 0);

  auto be = rt::make_backend("cpu");
  be->set_threads(threads);
  rt::ModelConfig cfg;
  cfg.vocab_size = vocab;
  cfg.d_model = d_model;
  cfg.tie_embeddings = false;  // the head's own [V, C] matrix; tied or not costs the same
  std::vector<rt::TensorSpec> specs;
  rt::LmHead::add_specs(specs, cfg);
  rt::ParamStore store(*be, specs);
  store.initialize(1);

  // GPT-2-like hidden states (unit scale) and targets spread over the vocabulary.
  rt::Tensor x = rt::Tensor::empty(*be, {tokens, d_model}, rt::DType::f32, rt::MemTag::activations);
  rt::Tensor targets = rt::Tensor::empty(*be, {tokens}, rt::DType::i32, rt::MemTag::activations);
  {
    std::vector<float> xv(static_cast<size_t>(tokens) * d_model);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (float& v : xv) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      v = static_cast<float>(static_cast<int64_t>(s >> 40) % 2001 - 1000) / 1000.0f;
    }
    rt::from_host(x, xv);
    std::vector<int32_t> tv(tokens);
    for (int64_t i = 0; i < tokens; ++i) tv[i] = static_cast<int32_t>((i * 7919) % vocab);
    rt::from_host(targets, tv);
  }

  std::vector<Column> cols;
  for (int k : chunks) {
    cols.emplace_back();
    cols.back().chunk = k;
  }
  using clock = std::chrono::steady_clock;
  const float dloss = 1.0f / static_cast<float>(tokens);
  std::fprintf(stderr, "loss_bench: V=%d C=%d tokens=%lld threads=%d, %d rounds + 1 warm-up\n",
               vocab, d_model, static_cast<long long>(tokens), threads, reps);
  for (int round = 0; round <= reps; ++round) {
    for (Column& col : cols) {
      rt::ModelConfig c = cfg;
      c.loss_chunk = col.chunk;
      rt::LmHead head(store, c);
      store.zero_grads();
      rt::MemoryAccounting& mem = be->memory();
      const int64_t base_total = mem.current_total();
      const int64_t base_loss = mem.current(rt::MemTag::loss_workspace);
      mem.reset_peaks();
      rt::Tensor dx;
      auto t0 = clock::now();
      const double c0 = cpu_seconds();
      col.loss = head.forward_backward(x, targets, dloss, &dx);
      const double dc = cpu_seconds() - c0;
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      col.peak_loss_ws = mem.peak(rt::MemTag::loss_workspace) - base_loss;
      col.peak_total = mem.peak_total() - base_total;
      dx = {};
      double de = NAN;
      if (eval) {
        t0 = clock::now();
        head.forward(x, targets);
        de = std::chrono::duration<double>(clock::now() - t0).count();
      }
      if (round > 0) {
        col.wall_s.push_back(dt);
        col.cpu_s.push_back(dc);
        if (eval) col.eval_s.push_back(de);
      }
      std::fprintf(stderr, "  round %d chunk %d: %.3f s (cpu %.3f s)%s\n", round, col.chunk, dt,
                   dc, round == 0 ? " (warm-up)" : "");
    }
  }

  const Column& ref = cols.front();
  double worst_loss = 0;
  for (const Column& col : cols) {
    worst_loss = std::max(worst_loss, std::abs(col.loss - ref.loss) / ref.loss);
  }
  std::printf("\nchunked loss: V=%d C=%d tokens=%lld threads=%d; LM head + cross-entropy forward+"
              "backward (cpu backend, fp32), %d timed rounds\n",
              vocab, d_model, static_cast<long long>(tokens), threads, reps);
  std::printf("%-10s %11s %9s %12s %9s %10s %8s %9s %8s %9s%s\n", "loss_chunk", "loss ws MiB",
              "mem ratio", "peak all MiB", "median s", "time ratio", "min s", "min ratio",
              "cpu s", "cpu ratio", eval ? "   eval s eval ratio" : "");
  for (const Column& col : cols) {
    char eval_cols[64] = "";
    if (eval) {
      std::snprintf(eval_cols, sizeof(eval_cols), " %8.3f %10.3f", median(col.eval_s),
                    paired_ratio(col.eval_s, ref.eval_s));
    }
    std::printf("%-10s %11s %8.2fx %12s %9.3f %10.3f %8.3f %9.3f %8.3f %9.3f%s\n",
                col.chunk == 0 ? "0 (whole)" : std::to_string(col.chunk).c_str(),
                mib(col.peak_loss_ws).c_str(),
                static_cast<double>(ref.peak_loss_ws) / static_cast<double>(col.peak_loss_ws),
                mib(col.peak_total).c_str(), median(col.wall_s),
                paired_ratio(col.wall_s, ref.wall_s), minimum(col.wall_s),
                minimum(col.wall_s) / minimum(ref.wall_s), median(col.cpu_s),
                paired_ratio(col.cpu_s, ref.cpu_s), eval_cols);
  }
  std::printf(
      "mem ratio: unchunked / chunked peak loss-workspace bytes (higher = less memory). time "
      "ratio: chunked / unchunked wall time, median over rounds of the ratio within a round "
      "(1.10 = 10%% slower); min ratio: of the fastest rounds; cpu: process CPU time, the "
      "same way (less sensitive to other tenants taking the cores).\n");
  std::printf("loss agreement: worst |loss - unchunked| / unchunked = %.2e\n", worst_loss);
  for (const Column& col : cols) {
    std::printf("loss_bench chunk=%d peak_loss_workspace_bytes=%lld median_s=%.4f time_ratio=%.4f"
                " min_ratio=%.4f cpu_ratio=%.4f mem_ratio=%.4f\n",
                col.chunk, static_cast<long long>(col.peak_loss_ws), median(col.wall_s),
                paired_ratio(col.wall_s, ref.wall_s), minimum(col.wall_s) / minimum(ref.wall_s),
                paired_ratio(col.cpu_s, ref.cpu_s),
                static_cast<double>(ref.peak_loss_ws) / static_cast<double>(col.peak_loss_ws));
  }
  return 0;
}
