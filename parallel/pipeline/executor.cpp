// executor.cpp: the schedule walker. Sends are posted non-blocking and completed at
// the end of the step; receives block, in schedule order (deadlock-free by construction,
// tested in test_schedule.cpp).
#include "parallel/pipeline/executor.h"

#include "runtime/check.h"

namespace nupipe::parallel {

using runtime::DType;
using runtime::MemTag;
using runtime::Tensor;

namespace {
constexpr int kActivation = 0, kGradient = 1;
int tag_of(int mb, int kind) { return 2 * mb + kind; }
}  // namespace

PipelineExecutor::PipelineExecutor(runtime::StageModel& model, Communicator& pipeline,
                                   ScheduleKind kind, int microbatches, int micro_batch,
                                   Trace& trace)
    : model_(model),
      comm_(pipeline),
      trace_(trace),
      stage_(pipeline.rank()),
      stages_(pipeline.size()),
      microbatches_(microbatches),
      micro_batch_(micro_batch),
      schedule_(make_schedule(kind, stages_, stage_, microbatches)) {
  NUPIPE_CHECK(model.slice().embedding == (stage_ == 0), "embedding must be on stage 0");
  NUPIPE_CHECK(model.slice().head == (stage_ == stages_ - 1), "head must be on the last stage");
}

Tensor PipelineExecutor::upload(const std::vector<int32_t>& host) const {
  Tensor t = Tensor::empty(model_.backend(), {static_cast<int64_t>(host.size())}, DType::i32,
                           MemTag::workspace);
  runtime::from_host(t, host);
  return t;
}

Tensor PipelineExecutor::recv_hidden(int mb, int kind) {
  const int64_t rows = static_cast<int64_t>(micro_batch_) * model_.config().seq_len;
  // Received activations are kept for backward (the first block's input): tag them so.
  Tensor t = Tensor::empty(model_.backend(), {rows, model_.config().d_model},
                           model_.config().dtype,
                           kind == kActivation ? MemTag::activations : MemTag::workspace);
  const int peer = kind == kActivation ? stage_ - 1 : stage_ + 1;
  Trace::Scope span(trace_, "recv", "comm", mb);
  comm_.irecv(t.data(), t.numel(), peer, tag_of(mb, kind)).wait();
  return t;
}

void PipelineExecutor::send_hidden(const Tensor& t, int mb, int kind) {
  const int peer = kind == kActivation ? stage_ + 1 : stage_ - 1;
  Trace::Scope span(trace_, "send", "comm", mb);
  pending_.push_back({mb, kind, comm_.isend(t.data(), t.numel(), peer, tag_of(mb, kind)), t});
}

void PipelineExecutor::finish_send(int mb, int kind) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->microbatch == mb && it->kind == kind) {
      it->request.wait();
      pending_.erase(it);
      return;
    }
  }
}

void PipelineExecutor::finish_sends() {
  Trace::Scope span(trace_, "send-wait", "comm");
  for (PendingSend& p : pending_) p.request.wait();
  pending_.clear();
}

double PipelineExecutor::train_step(const LoadBatch& load, float dloss) {
  const int64_t rows = static_cast<int64_t>(micro_batch_) * model_.config().seq_len;
  std::vector<runtime::StageModel::Pass> passes(microbatches_);
  std::vector<Tensor> inputs(microbatches_), grads(microbatches_);
  std::vector<int32_t> tokens(rows), targets(rows);
  double loss = 0.0;
  for (const Action& a : schedule_) {
    const int mb = a.microbatch;
    switch (a.type) {
      case ActionType::recv_activation:
        inputs[mb] = recv_hidden(mb, kActivation);
        break;
      case ActionType::forward: {
        Trace::Scope span(trace_, "forward", "compute", mb);
        if (model_.slice().embedding || model_.slice().head) load(mb, tokens, targets);
        Tensor input = model_.slice().embedding ? upload(tokens) : inputs[mb];
        inputs[mb] = {};
        model_.forward(passes[mb], input, micro_batch_);
        if (model_.slice().head) {
          // The head's weight gradients come here under every schedule: deferring them to W
          // (head_forward_input) recomputes the logits, +55-63% of the head's time
          // (docs/backward-split.md), which no filled bubble repays.
          loss += model_.head_forward_backward(passes[mb], upload(targets), dloss, grads[mb]);
        }
        break;
      }
      case ActionType::send_activation:
        send_hidden(passes[mb].hidden, mb, kActivation);
        break;
      case ActionType::recv_gradient:
        grads[mb] = recv_hidden(mb, kGradient);
        break;
      case ActionType::backward: {
        // The gradient for mb came back, so the next stage has long received activation mb:
        // its send is complete; release the buffer now rather than at the end of the step.
        finish_send(mb, kActivation);
        Trace::Scope span(trace_, "backward", "compute", mb);
        grads[mb] = model_.backward(passes[mb], grads[mb]);  // now d(input), or undefined
        break;
      }
      case ActionType::backward_input: {
        finish_send(mb, kActivation);  // as for the fused backward
        Trace::Scope span(trace_, "backward_input", "compute", mb);
        grads[mb] = model_.backward_input(passes[mb], grads[mb]);
        break;
      }
      case ActionType::backward_weight: {
        Trace::Scope span(trace_, "backward_weight", "compute", mb);
        model_.backward_weight(passes[mb]);
        break;
      }
      case ActionType::send_gradient:
        send_hidden(grads[mb], mb, kGradient);
        grads[mb] = {};
        // The previous stage has received the gradient before this one's (messages of a
        // pair arrive in order): at most two gradient sends, not all m, stay buffered.
        if (mb > 0) finish_send(mb - 1, kGradient);
        break;
    }
  }
  finish_sends();
  return loss;
}

double PipelineExecutor::eval(const LoadBatch& load, int microbatches) {
  const int64_t rows = static_cast<int64_t>(micro_batch_) * model_.config().seq_len;
  std::vector<int32_t> tokens(rows), targets(rows);
  double loss = 0.0;
  for (int mb = 0; mb < microbatches; ++mb) {
    runtime::StageModel::Pass pass;
    if (model_.slice().embedding || model_.slice().head) load(mb, tokens, targets);
    Tensor input = model_.slice().embedding ? upload(tokens) : recv_hidden(mb, kActivation);
    model_.forward(pass, input, micro_batch_);
    if (model_.slice().head) {
      loss += model_.head_forward(pass, upload(targets));
    } else {
      send_hidden(pass.hidden, mb, kActivation);
      // At most two sends in flight: validation holds two microbatches' outputs, not all.
      if (mb > 0) finish_send(mb - 1, kActivation);
    }
  }
  finish_sends();
  return loss;
}

}  // namespace nupipe::parallel
