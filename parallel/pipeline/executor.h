// executor.h: walks one stage's schedule for a training step: receives and sends
// activations and their gradients, runs the stage's forward and backward per microbatch.
#pragma once

#include <functional>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/trace.h"
#include "runtime/stage_model.h"

namespace nupipe::parallel {

class PipelineExecutor {
 public:
  // Fills the host buffers (micro_batch x seq_len each) of microbatch `mb`; called on the
  // first stage (tokens) and on the last (targets).
  using LoadBatch = std::function<void(int mb, std::vector<int32_t>& tokens,
                                       std::vector<int32_t>& targets)>;

  // `pipeline` is this replica's pipeline group (its rank is the stage).
  PipelineExecutor(runtime::StageModel& model, Communicator& pipeline, ScheduleKind kind,
                   int microbatches, int micro_batch, Trace& trace);

  // One step's forwards and backwards over all microbatches; parameter gradients accumulate
  // in the model's store. Each token's loss gradient is `dloss`. Returns the sum of token
  // losses on the last stage and 0 elsewhere.
  double train_step(const LoadBatch& load, float dloss);
  // Forward only over `microbatches` microbatches (validation). Same return convention.
  double eval(const LoadBatch& load, int microbatches);

  int stage() const { return stage_; }
  int stages() const { return stages_; }

 private:
  runtime::Tensor upload(const std::vector<int32_t>& host) const;
  runtime::Tensor recv_hidden(int mb, int tag_kind);
  void send_hidden(const runtime::Tensor& t, int mb, int tag_kind);
  void finish_send(int mb, int tag_kind);
  void finish_sends();

  runtime::StageModel& model_;
  Communicator& comm_;
  Trace& trace_;
  int stage_, stages_, microbatches_, micro_batch_;
  std::vector<Action> schedule_;
  struct PendingSend {
    int microbatch, kind;
    Request request;
    runtime::Tensor buffer;  // kept alive until the send completes
  };
  std::vector<PendingSend> pending_;
};

}  // namespace nupipe::parallel
