// model_grad_check.cpp: see model_grad_check.h.
#include "tests/unit/model_grad_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/unit/grad_check.h"

namespace nupipe::testing {

using runtime::DType;
using runtime::MemTag;
using runtime::StageModel;
using runtime::Tensor;
using runtime::TensorSpec;

namespace {

Tensor ids(runtime::Backend& be, const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty(be, {static_cast<int64_t>(v.size())}, DType::i32, MemTag::workspace);
  runtime::from_host(t, v);
  return t;
}

}  // namespace

void expect_parameter_gradients(StageModel& model, const std::vector<int32_t>& tokens,
                                const std::vector<int32_t>& targets, int64_t B) {
  runtime::ParamStore& params = model.params();
  Tensor tok = ids(model.backend(), tokens), tgt = ids(model.backend(), targets);
  const float dloss = 1.0f / static_cast<float>(tokens.size());
  auto objective = [&] { return model.loss_sum(tok, tgt, B) * dloss; };
  auto analytic = [&] {
    params.zero_grads();
    model.forward_backward(tok, tgt, B, dloss);
    std::vector<std::vector<float>> g;
    for (const TensorSpec& s : params.specs()) g.push_back(runtime::to_host(params.grad(s.name)));
    return g;
  };
  std::vector<GradSlot> slots;
  for (const TensorSpec& s : params.specs()) slots.push_back({s.name, params.param(s.name)});
  const auto results = check_gradients(objective, analytic, slots, 3e-3, 2);
  ASSERT_EQ(results.size(), 2 * slots.size());
  for (const auto& r : results) {
    EXPECT_LE(std::abs(r.analytic - r.numeric),
              1e-2 * std::max(std::abs(r.analytic), std::abs(r.numeric)) + 3e-5)
        << r.name << ": analytic " << r.analytic << " numeric " << r.numeric;
  }
}

void expect_input_gradient(StageModel& model, int64_t B) {
  runtime::Backend& be = model.backend();
  const int64_t N = B * model.config().seq_len, C = model.config().d_model;
  Tensor x = Tensor::empty(be, {N, C}, DType::f32, MemTag::activations);
  runtime::from_host(x, random_values(N * C, 21));
  const std::vector<float> probe = random_values(N * C, 22);
  auto objective = [&] {
    StageModel::Pass pass;
    return weighted_sum(model.forward(pass, x, B), probe);
  };
  auto analytic = [&] {
    StageModel::Pass pass;
    model.forward(pass, x, B);
    Tensor d = Tensor::empty(be, {N, C}, DType::f32, MemTag::workspace);
    runtime::from_host(d, probe);
    return std::vector<std::vector<float>>{runtime::to_host(model.backward(pass, d))};
  };
  for (const auto& r : check_gradients(objective, analytic, {{"x", x}}, 1e-2, 3)) {
    EXPECT_LE(std::abs(r.analytic - r.numeric),
              5e-3 * std::max(std::abs(r.analytic), std::abs(r.numeric)))
        << r.name << ": analytic " << r.analytic << " numeric " << r.numeric;
  }
}

}  // namespace nupipe::testing
