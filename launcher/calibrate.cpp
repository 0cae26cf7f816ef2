// calibrate.cpp: the passes of one microbatch timed apart on the cpu backend.
#include "launcher/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/backend.h"
#include "runtime/elapsed.h"
#include "runtime/error.h"
#include "runtime/posix_file.h"
#include "runtime/stage_model.h"

namespace nupipe::launcher {

namespace {

using Clock = std::chrono::steady_clock;
using runtime::seconds_since;

// Runs `round` (which adds each of its parts' seconds to that part's samples) at least 5
// times and for at least 0.3 s.
template <class F>
void repeat(F&& round) {
  const auto start = Clock::now();
  for (int rep = 0; rep < 5 || seconds_since(start) < 0.3; ++rep) round();
}

// Samples of one pass's seconds; their median is what it is taken to cost.
struct Samples {
  std::vector<double> s;
  void add(double v) { s.push_back(v); }
  double median() {
    std::sort(s.begin(), s.end());
    return s.empty() ? 0.0 : s[s.size() / 2];
  }
};

// The median time of each pass of one microbatch through `slice` of `model` (n_layer set to
// the slice's blocks): forward (for the head: with its loss and backward), the backward fused,
// and (with `split`) the backward as B then W.
struct SliceTimes {
  double forward = 0, backward = 0, input = 0, weight = 0;
};

SliceTimes time_slice(const runtime::ModelConfig& model, const runtime::StageSlice& slice,
                      int micro_batch, int threads, bool split,
                      double* step_elements_per_s = nullptr) {
  using runtime::DType;
  using runtime::MemTag;
  using runtime::Tensor;
  std::unique_ptr<runtime::Backend> be = runtime::make_backend("cpu");
  be->set_threads(threads);
  runtime::StageModel m(*be, model, slice);
  m.params().initialize(1);
  const int64_t n = static_cast<int64_t>(micro_batch) * model.seq_len;
  const int64_t c = model.d_model;
  // Tokens and targets spread over the vocabulary; hidden states and their gradients of the
  // scale a trained model's have.
  std::vector<int32_t> tok(n), tgt(n);
  for (int64_t i = 0; i < n; ++i) {
    tok[i] = static_cast<int32_t>((i * 7919) % model.vocab_size);
    tgt[i] = static_cast<int32_t>((i * 104729 + 1) % model.vocab_size);
  }
  std::vector<float> hidden(n * c), grad(n * c);
  for (int64_t i = 0; i < n * c; ++i) {
    hidden[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    grad[i] = 1e-3f * static_cast<float>(std::cos(0.11 * static_cast<double>(i)));
  }
  Tensor input = slice.embedding ? Tensor::empty(*be, {n}, DType::i32, MemTag::workspace)
                                 : Tensor::empty(*be, {n, c}, DType::f32, MemTag::workspace);
  if (slice.embedding) runtime::from_host(input, tok);
  else runtime::from_host(input, hidden);
  Tensor targets = Tensor::empty(*be, {n}, DType::i32, MemTag::workspace);
  runtime::from_host(targets, tgt);
  Tensor dout = Tensor::empty(*be, {n, c}, DType::f32, MemTag::workspace);
  runtime::from_host(dout, grad);
  const float dloss = 1.0f / static_cast<float>(n);

  Samples fw, bw, in, wt;
  auto forward = [&](runtime::StageModel::Pass& pass) {
    m.forward(pass, input, micro_batch);
    if (!slice.head) return dout;
    Tensor d;
    m.head_forward_backward(pass, targets, dloss, d);
    return d;
  };
  repeat([&] {
    runtime::StageModel::Pass pass;
    auto t0 = Clock::now();
    Tensor d = forward(pass);
    fw.add(seconds_since(t0));
    t0 = Clock::now();
    m.backward(pass, d);
    bw.add(seconds_since(t0));
  });
  if (split) repeat([&] {
    runtime::StageModel::Pass pass;
    Tensor d = forward(pass);
    auto t0 = Clock::now();
    m.backward_input(pass, d);
    in.add(seconds_since(t0));
    t0 = Clock::now();
    m.backward_weight(pass);
    wt.add(seconds_since(t0));
  });
  if (step_elements_per_s) {
    // What the step does per element after the pipeline (launcher/train_step.cpp): zero the
    // gradients, their squared norm, AdamW.
    runtime::ParamStore& ps = m.params();
    const int64_t e = ps.numel();
    Tensor mo = Tensor::zeros(*be, {e}, DType::f32, MemTag::optimizer);
    Tensor v = Tensor::zeros(*be, {e}, DType::f32, MemTag::optimizer);
    Samples tail;
    volatile double norm = 0.0;  // the squared norm is computed, not optimised away
    repeat([&] {
      const auto t0 = Clock::now();
      ps.zero_grads();
      norm = be->sum_squares(ps.flat_grads().f32(), e);
      be->adamw(ps.flat_params().f32(), ps.flat_grads().f32(), mo.f32(), v.f32(), e, 1e-4f,
                0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f);
      tail.add(seconds_since(t0));
    });
    *step_elements_per_s = static_cast<double>(e) / std::max(tail.median(), 1e-9);
  }
  return {fw.median(), bw.median(), in.median(), wt.median()};
}

}  // namespace

Calibration calibrate(const runtime::ModelConfig& model, int micro_batch, int threads) {
  Calibration out;
  runtime::ModelConfig mc = model;
  mc.n_layer = std::min(model.n_layer, 2);
  const double k = mc.n_layer;
  if (mc.n_layer > 0) {
    const SliceTimes b = time_slice(mc, {0, mc.n_layer, false, false}, micro_batch, threads,
                                    true, &out.step_elements_per_s);
    out.passes.block_forward = b.forward / k;
    out.passes.block_backward = b.backward / k;
    out.passes.block_input = b.input / k;
    out.passes.block_weight = b.weight / k;
  }
  // The embedding's gradient is its whole backward (B only copies what W reads); the head's
  // backward comes with its forward (the last stage's forward action).
  const SliceTimes e = time_slice(mc, {0, 0, true, false}, micro_batch, threads, false);
  out.passes.embedding_forward = e.forward;
  out.passes.embedding_backward = e.backward;
  const SliceTimes h = time_slice(mc, {0, 0, false, true}, micro_batch, threads, false);
  out.passes.head = h.forward;
  return out;
}

namespace {

// The model and run fields a calibration's times depend on, by name.
nlohmann::json shape_json(const CalibrationShape& on) {
  const runtime::ModelConfig& m = on.model;
  return {{"family", m.family},       {"d_model", m.d_model},
          {"n_head", m.n_head},       {"n_kv_head", m.n_kv_head},
          {"ffn_hidden", m.ffn_hidden}, {"lfa", m.lfa},
          {"tie_embeddings", m.tie_embeddings}, {"seq_len", m.seq_len},
          {"vocab_size", m.vocab_size}, {"loss_chunk", m.loss_chunk},
          {"dtype", runtime::dtype_name(m.dtype)},
          {"fused_attention", m.fused_attention},
          {"micro_batch", on.micro_batch}, {"threads", on.threads}};
}

// Each pass's seconds, by name, in one list for writing and reading.
std::vector<std::pair<const char*, double parallel::PassTimes::*>> pass_fields() {
  using P = parallel::PassTimes;
  return {{"block_forward_s", &P::block_forward},        {"block_backward_s", &P::block_backward},
          {"block_input_s", &P::block_input},            {"block_weight_s", &P::block_weight},
          {"embedding_forward_s", &P::embedding_forward},
          {"embedding_backward_s", &P::embedding_backward}, {"head_s", &P::head}};
}

}  // namespace

void save_calibration(const std::string& path, const Calibration& c, const CalibrationShape& on) {
  nlohmann::json j;
  j["format"] = "nupipe-calibration-1";
  j["shape"] = shape_json(on);
  for (const auto& [name, field] : pass_fields()) j["passes"][name] = c.passes.*field;
  j["step_elements_per_s"] = c.step_elements_per_s;
  std::string step;
  if (const int err = runtime::write_file_atomic(path, j.dump(1) + "\n", &step)) {
    throw usage_error("--save-calibration " + path + ": " + step + " failed: " +
                          runtime::errno_text(err),
                      "choose a writable path");
  }
}

Calibration load_calibration(const std::string& path, const CalibrationShape& expected,
                             const std::string& source) {
  const std::string fix = "time it with nupipe plan CONFIG --calibrate --save-calibration " +
                          path + " (same model, train.micro_batch and runtime.threads)";
  std::ifstream in(path);
  if (!in) throw usage_error(source + " " + path + ": cannot open it", fix);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw usage_error(source + " " + path + ": not JSON (" + e.what() + ")", fix);
  }
  if (!j.is_object() || j.value("format", "") != "nupipe-calibration-1") {
    throw usage_error(source + " " + path + ": not a nupipe calibration (no \"format\": "
                      "\"nupipe-calibration-1\")", fix);
  }
  const nlohmann::json want = shape_json(expected);
  for (const auto& [key, value] : want.items()) {
    const nlohmann::json got = j["shape"].is_object() && j["shape"].contains(key)
                                   ? j["shape"][key] : nlohmann::json();
    if (got.is_null()) {
      throw usage_error(source + " " + path + ": it has no shape." + key, fix);
    }
    if (got != value) {
      throw usage_error(source + " " + path + ": timed with " + key + " = " + got.dump() +
                            ", this plan has " + value.dump(),
                        fix);
    }
  }
  Calibration c;
  for (const auto& [name, field] : pass_fields()) {
    const nlohmann::json& v = j["passes"].is_object() && j["passes"].contains(name)
                                  ? j["passes"][name] : nlohmann::json();
    if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>())) {
      throw usage_error(source + " " + path + ": passes." + name + " is " + v.dump() +
                        ", not a number of seconds >= 0", fix);
    }
    c.passes.*field = v.get<double>();
  }
  const nlohmann::json& r = j["step_elements_per_s"];
  if (!r.is_number() || !(r.get<double>() >= 0)) {
    throw usage_error(source + " " + path + ": step_elements_per_s is " + r.dump() +
                      ", not a rate >= 0", fix);
  }
  c.step_elements_per_s = r.get<double>();
  if (!c.passes.given()) {
    throw usage_error(source + " " + path + ": passes.block_forward_s is 0", fix);
  }
  return c;
}

std::string describe(const Calibration& c, int threads, int micro_batch) {
  const parallel::PassTimes& p = c.passes;
  return fmt::format(
      "calibrated on this machine's cpu backend ({} thread{}, micro_batch {}), per "
      "microbatch: a block's forward {:.3f} ms, backward {:.3f} ms fused or B {:.3f} + W "
      "{:.3f} ms; the embedding's forward {:.3f} ms and gradient {:.3f} ms; the head's "
      "forward, loss and backward {:.3f} ms; the optimizer step {:.0f} M elements/s",
      threads, threads == 1 ? "" : "s", micro_batch, p.block_forward * 1e3,
      p.block_backward * 1e3, p.block_input * 1e3, p.block_weight * 1e3,
      p.embedding_forward * 1e3, p.embedding_backward * 1e3, p.head * 1e3,
      c.step_elements_per_s / 1e6);
}

}  // namespace nupipe::launcher
