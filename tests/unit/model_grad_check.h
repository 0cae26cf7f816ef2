// model_grad_check.h: finite-difference checks of a whole StageModel, shared by the model
// families' tests: every parameter's gradient through the loss, and a slice's input gradient.
#pragma once

#include <vector>

#include "runtime/stage_model.h"

namespace nupipe::testing {

// Every parameter gradient of forward_backward(tokens, targets, B, 1 / tokens) against central
// differences of the loss, 2 random directions per parameter, step 3e-3, within 1e-2 relative
// + 3e-5 absolute (test_layers.cpp's whole-model bounds and their reasoning).
void expect_parameter_gradients(runtime::StageModel& model, const std::vector<int32_t>& tokens,
                                const std::vector<int32_t>& targets, int64_t B);

// The input gradient of a slice without embedding against central differences of <out, probe>
// along 3 random directions of a fixed input, step 1e-2, within 5e-3 relative.
void expect_input_gradient(runtime::StageModel& model, int64_t B);

}  // namespace nupipe::testing
