// backward_split_bench.cpp: the fused backward against the backward in two passes (B, the input
// gradient, then W, the weight gradients) on the cpu backend, side by side in one run.
//   backward_split_bench [--layers 4] [--d-model 256] [--heads 4] [--seq 128] [--micro-batch 4]
//                        [--vocab 8192] [--loss-chunk 0] [--precision fp32,bf16] [--reps 7]
//                        [--threads 1]
// Two slices per precision: "blocks" (the blocks alone, what a middle stage runs) and "head"
// (the last block, final LayerNorm, LM head and loss, what the last stage runs; its forward
// action holds the head's input gradient, and with the split the head's weight gradients move
// to W, recomputing the logits). Each round runs fused then split (alternating which goes
// first), forward untimed; ratios are taken within a round, medians over rounds, the first
// round a warm-up. Absolute times on shared machines are noise; the ratios are the result.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/stage_model.h"

namespace rt = nupipe::runtime;

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(a[i] / b[i]);
  return median(r);
}

std::vector<float> pseudo_random(size_t n, uint64_t s, float scale) {
  std::vector<float> v(n);
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = scale * static_cast<float>(static_cast<int64_t>(s >> 40) % 2001 - 1000) / 1000.0f;
  }
  return v;
}

// Per timed round, milliseconds: the fused path's (head + backward, or backward), and the
// split path's head forward part, B and W.
struct Times {
  std::vector<double> fused, split_head, b, w;  // thread CPU time
  std::vector<double> fused_wall, split_wall;   // wall time
};

// This thread's CPU time in ms: with one compute thread the kernels run on it, so a spell
// of other tenants on the cores does not count (wall time is printed beside it).
double thread_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return 1e3 * static_cast<double>(ts.tv_sec) + 1e-6 * static_cast<double>(ts.tv_nsec);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nupipe backward split: fused backward vs input-gradient + weight-gradient passes"};
  int layers = 4, d_model = 256, heads = 4, seq = 128, micro_batch = 4, vocab = 8192;
  int loss_chunk = 0, reps = 7, threads = 1;
  std::vector<std::string> precisions = {"fp32", "bf16"};
  app.add_option("--layers", layers, "blocks of the blocks slice")->check(CLI::PositiveNumber);
  app.add_option("--d-model", d_model, "hidden size C")->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--seq", seq, "sequence length T")->check(CLI::PositiveNumber);
  app.add_option("--micro-batch", micro_batch, "sequences per microbatch")
      ->check(CLI::PositiveNumber);
  app.add_option("--vocab", vocab, "vocabulary size V (the head slice)")
      ->check(CLI::PositiveNumber);
  app.add_option("--loss-chunk", loss_chunk, "train.loss_chunk (0: unchunked)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--precision", precisions, "fp32, bf16")->delimiter(',');
  app.add_option("--reps", reps, "timed rounds after one warm-up")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "cpu backend threads")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  auto be = rt::make_backend("cpu");
  be->set_threads(threads);
  const int64_t N = static_cast<int64_t>(micro_batch) * seq;
  std::printf("backward split: %d blocks, C=%d, H=%d, T=%d, micro_batch %d (%lld tokens), V=%d, "
              "loss_chunk %d, %d thread(s), cpu backend, %d timed rounds + 1 warm-up\n",
              layers, d_model, heads, seq, micro_batch, static_cast<long long>(N), vocab,
              loss_chunk, threads, reps);
  std::printf("%-5s %-7s %10s %10s %8s %8s %10s %11s %9s %10s %11s\n", "prec", "slice",
              "fused ms", "split ms", "B ms", "W ms", "head F ms", "split/fused", "min ratio",
              "wall ratio", "W-held MiB");
  for (const std::string& prec : precisions) {
    if (prec != "fp32" && prec != "bf16") {
      std::fprintf(stderr, "backward_split_bench: --precision %s: expected fp32 or bf16\n",
                   prec.c_str());
      return 2;
    }
    rt::ModelConfig cfg;
    cfg.n_layer = layers;
    cfg.d_model = d_model;
    cfg.n_head = heads;
    cfg.seq_len = seq;
    cfg.vocab_size = vocab;
    cfg.loss_chunk = loss_chunk;
    cfg.tie_embeddings = false;
    cfg.dtype = prec == "bf16" ? rt::DType::bf16 : rt::DType::f32;
    for (const bool head_slice : {false, true}) {
      const rt::StageSlice slice = head_slice ? rt::StageSlice{layers - 1, layers, false, true}
                                              : rt::StageSlice{0, layers, false, false};
      rt::StageModel model(*be, cfg, slice);
      model.params().initialize(1);
      rt::Tensor x = rt::Tensor::empty(*be, {N, d_model}, cfg.dtype, rt::MemTag::activations);
      rt::from_host(x, pseudo_random(static_cast<size_t>(N) * d_model, 11, 1.0f));
      rt::Tensor dy = rt::Tensor::empty(*be, {N, d_model}, cfg.dtype, rt::MemTag::workspace);
      rt::from_host(dy, pseudo_random(static_cast<size_t>(N) * d_model, 12, 0.01f));
      rt::Tensor targets = rt::Tensor::empty(*be, {N}, rt::DType::i32, rt::MemTag::workspace);
      std::vector<int32_t> tv(N);
      for (int64_t i = 0; i < N; ++i) tv[i] = static_cast<int32_t>((i * 7919) % vocab);
      rt::from_host(targets, tv);
      const float dloss = 1.0f / static_cast<float>(N);
      Times t;
      int64_t held = 0;
      for (int round = 0; round <= reps; ++round) {
        for (int k = 0; k < 2; ++k) {
          const bool split = (k == 0) == (round % 2 == 1);  // alternate which runs first
          rt::StageModel::Pass pass;
          model.forward(pass, x, micro_batch);
          rt::Tensor d = dy;
          double head_ms = 0.0, b_ms = 0.0, w_ms = 0.0;
          const auto wall0 = std::chrono::steady_clock::now();
          double t0 = thread_ms();
          if (head_slice) {
            if (split) model.head_forward_input(pass, targets, dloss, d);
            else model.head_forward_backward(pass, targets, dloss, d);
            head_ms = thread_ms() - t0;
          }
          t0 = thread_ms();
          if (split) {
            model.backward_input(pass, d);
            b_ms = thread_ms() - t0;
            held = be->memory().current(rt::MemTag::weight_inputs);
            t0 = thread_ms();
            model.backward_weight(pass);
            w_ms = thread_ms() - t0;
          } else {
            model.backward(pass, d);
            b_ms = thread_ms() - t0;
          }
          const double wall = ms_since(wall0);
          if (round == 0) continue;
          if (split) {
            t.split_head.push_back(head_ms);
            t.b.push_back(b_ms);
            t.w.push_back(w_ms);
            t.split_wall.push_back(wall);
          } else {
            t.fused.push_back(head_ms + b_ms);
            t.fused_wall.push_back(wall);
          }
        }
      }
      std::vector<double> split_total;
      for (size_t i = 0; i < t.b.size(); ++i) {
        split_total.push_back(t.split_head[i] + t.b[i] + t.w[i]);
      }
      const double min_ratio = *std::min_element(split_total.begin(), split_total.end()) /
                               *std::min_element(t.fused.begin(), t.fused.end());
      std::printf("%-5s %-7s %10.2f %10.2f %8.2f %8.2f %10.2f %11.3f %9.3f %10.3f %11.2f\n",
                  prec.c_str(), head_slice ? "head" : "blocks", median(t.fused),
                  median(split_total), median(t.b), median(t.w),
                  head_slice ? median(t.split_head) : 0.0, ratio(split_total, t.fused),
                  min_ratio, ratio(t.split_wall, t.fused_wall),
                  static_cast<double>(held) / (1024.0 * 1024.0));
    }
  }
  std::printf(
      "Times: this thread's CPU time, medians over rounds. fused ms: the fused backward (with "
      "the head slice, head_forward_backward + backward); split ms: head_forward_input + "
      "backward_input + backward_weight; B, W: their parts; split/fused: median over rounds of "
      "the ratio within a round; min ratio: of the fastest rounds; wall ratio: split/fused in "
      "wall time, the same way; W-held: the weight_inputs tag between B and W. Forward "
      "untimed.\n");
  return 0;
}
