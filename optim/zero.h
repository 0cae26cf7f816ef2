// zero.h: the data-parallel half of a stage's optimizer step: gradients summed over the
// stage's replicas, the global norm, clipping, AdamW, either replicated (parallel.zero = 0) or
// ZeRO-1 (parallel.zero = 1: AdamW state sharded over the replicas at offsets of the flat buffer).
#pragma once

#include <cstdint>

#include "optim/adamw.h"
#include "optim/options.h"
#include "parallel/comm/topology.h"
#include "runtime/param_store.h"

namespace nupipe::optim {

// One rank's shard of a flat buffer of n elements cut into `ranks` equal shards of
// shard_numel(n, ranks) = ceil(n / ranks) elements: the buffer is padded to ranks times that
// (the last shard ends in the padding; with n < ranks some shards are all padding).
struct Shard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t numel() const { return end - begin; }
};
int64_t shard_numel(int64_t n, int ranks);
Shard shard_of(int64_t n, int ranks, int rank);

// The optimizer of one rank of the pp x dp grid (the model never sees it). Per step, after the
// pipeline's backward has left this replica's gradient sums in the store:
//   double sq = opt.reduce_gradients();         // comm; the global squared norm
//   opt.update(lr, std::sqrt(sq), clip);         // compute: clip + AdamW
//   opt.gather_params();                         // comm (ZeRO-1 only)
//
// zero = 0: all-reduce of the whole flat gradient over the data group; every replica keeps
// the full AdamW state and updates every parameter.
// zero = 1: the store's flat buffers are padded to a multiple of the data degree. The tied
// token table's gradient is first summed between first and last stage (embedding group),
// then the flat gradient is reduce-scattered over the data group: replica r receives the
// summed gradient of shard r, keeps AdamW state for that shard only, updates those parameters
// (decay flags per tensor piece) and all-gathers them back into every replica's buffer.
//
// The norm counts every parameter of the model once: zero = 0 sums one replica's full
// squares over the pipeline group; zero = 1 sums every rank's shard squares over the world
// (= data x pipeline group) in one all-reduce, kept off the data group so its bytes are the
// gradient traffic alone. The tied token table held by the first and the last stage is
// counted on the first only.
class ZeroOptimizer {
 public:
  // Does not communicate. `tied_embeddings`: the model ties its LM head to the token table.
  // Throws a usage error for zero = 1 with more data-parallel ranks than the store can pad for.
  ZeroOptimizer(runtime::ParamStore& store, parallel::ProcessGroups& groups, bool tied_embeddings,
                int zero, const AdamWOptions& options);
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  double reduce_gradients();
  // Returns the clip factor applied (1 within bounds).
  float update(float lr, double global_norm, const ClipOptions& clip);
  void gather_params();

  int zero() const { return zero_; }
  bool sharded() const { return zero_ == 1; }
  // This rank's flat range of the optimizer state: [0, numel) with zero = 0.
  const Shard& shard() const { return shard_; }
  const AdamW& adamw() const { return adamw_; }
  AdamW& adamw() { return adamw_; }
  // zero = 1: the gradient of shard() summed over the replicas (valid after
  // reduce_gradients; scaled by update's clipping). Undefined with zero = 0.
  const runtime::Tensor& grad_shard() const { return grad_shard_; }
  // Psi: bytes of the flat gradient buffer the data group moves (padded with zero = 1).
  int64_t grad_buffer_bytes() const;
  // The ZeRO paper's data-parallel traffic per rank and step, 2 Psi (dp - 1) / dp: all-reduce
  // (zero = 0) or reduce-scatter + all-gather (zero = 1) of Psi bytes.
  double formula_bytes_per_step() const;

 private:
  runtime::ParamStore& store_;
  parallel::ProcessGroups& groups_;
  int zero_;
  parallel::Communicator* tied_group_ = nullptr;  // embedding group where this stage holds a tied copy
  bool skip_tied_in_norm_ = false;                // the last stage's copy of the tied table
  Shard shard_;
  AdamW adamw_;
  runtime::Tensor grad_shard_;  // zero = 1: the reduce-scattered gradient of shard_
};

}  // namespace nupipe::optim
