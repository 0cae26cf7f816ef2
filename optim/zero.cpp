// zero.cpp: shard arithmetic and the replicated / ZeRO-1 gradient reduction and update.
#include "optim/zero.h"

#include <string>
#include <vector>

#include "optim/grad_clip.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/layers/embedding.h"

namespace nupipe::optim {

using runtime::DType;
using runtime::Embedding;
using runtime::MemTag;
using runtime::Tensor;

int64_t shard_numel(int64_t n, int ranks) {
  NUPIPE_CHECK(n >= 0 && ranks >= 1, "shard_numel(" + std::to_string(n) + ", " +
                                         std::to_string(ranks) + ")");
  return (n + ranks - 1) / ranks;
}

Shard shard_of(int64_t n, int ranks, int rank) {
  NUPIPE_CHECK(0 <= rank && rank < ranks, "shard_of: rank " + std::to_string(rank) + " of " +
                                              std::to_string(ranks));
  const int64_t s = shard_numel(n, ranks);
  return {rank * s, (rank + 1) * s};
}

namespace {

// This rank's shard of a store padded for the data degree; zero = 0: the whole unpadded
// buffer.
Shard prepare(runtime::ParamStore& store, parallel::Communicator& data, int zero) {
  if (zero == 0) return {0, store.numel()};
  NUPIPE_CHECK(zero == 1, "parallel.zero = " + std::to_string(zero));
  const int dp = data.size();
  NUPIPE_CHECK(store.padded_numel() % dp == 0,
               "ZeRO-1 needs the stage's flat buffers padded to a multiple of parallel.data = " +
                   std::to_string(dp) + " (build the model with pad_to = data degree)");
  return shard_of(store.numel(), dp, data.rank());
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(runtime::ParamStore& store, parallel::ProcessGroups& groups,
                             bool tied_embeddings, int zero, const AdamWOptions& options)
    : store_(store),
      groups_(groups),
      zero_(zero),
      shard_(prepare(store, groups.data(), zero)),
      adamw_(store, options, shard_.begin, shard_.end) {
  const parallel::Topology& topo = groups.topology();
  // With a tied head on a pipeline, the token table lives on the first and the last stage.
  if (topo.pipeline > 1 && tied_embeddings && (topo.first_stage() || topo.last_stage())) {
    NUPIPE_CHECK(store.has(Embedding::kTokenTable) && groups.embedding() != nullptr,
                 "tied token table expected on the first and last stage");
    tied_group_ = groups.embedding();
    skip_tied_in_norm_ = topo.last_stage();
  }
  if (sharded()) {
    // With one replica the shard is the whole buffer: no copy, no communication.
    grad_shard_ = groups.data().size() == 1
                      ? store.flat_grads()
                      : Tensor::zeros(store.backend(), {shard_.numel()}, DType::f32, MemTag::grads);
  }
}

double ZeroOptimizer::reduce_gradients() {
  runtime::Backend& be = store_.backend();
  const Tensor& g = store_.flat_grads();
  Tensor wte;
  if (tied_group_) wte = store_.grad(Embedding::kTokenTable);
  if (!sharded()) {
    groups_.data().all_reduce_sum(g.f32(), g.numel());
    if (tied_group_) tied_group_->all_reduce_sum(wte.f32(), wte.numel());
    // Global norm: every stage's share once (the tied table only on the first stage).
    double sq = grad_sum_squares(store_);
    if (skip_tied_in_norm_) sq -= be.sum_squares(wte.f32(), wte.numel());
    groups_.pipeline_host().all_reduce_sum(&sq, 1);  // a host scalar
    return sq;
  }
  // The tied table's two copies first (linear, so summing before the replicas is the same
  // sum), then each replica receives its shard summed over the replicas.
  if (tied_group_) tied_group_->all_reduce_sum(wte.f32(), wte.numel());
  if (groups_.data().size() > 1) {
    groups_.data().reduce_scatter_sum(g.f32(), grad_shard_.f32(), shard_.numel());
  }
  std::vector<std::string> skip;
  if (skip_tied_in_norm_) skip.push_back(Embedding::kTokenTable);
  double sq = grad_sum_squares(store_, grad_shard_.f32(), shard_.begin, shard_.end, skip);
  groups_.world().all_reduce_sum(&sq, 1);
  return sq;
}

float ZeroOptimizer::update(float lr, double global_norm, const ClipOptions& clip) {
  if (!sharded()) {
    const float factor = clip_to_norm(store_, global_norm, clip);
    adamw_.step(lr);
    return factor;
  }
  const float factor =
      clip_to_norm(store_.backend(), grad_shard_.f32(), shard_.numel(), global_norm, clip);
  adamw_.step(lr, grad_shard_.f32());
  return factor;
}

void ZeroOptimizer::gather_params() {
  if (!sharded() || groups_.data().size() == 1) return;
  const runtime::DevPtr p = store_.flat_params().data();  // the compute copy: bf16 moves bf16
  groups_.data().all_gather(p + shard_.begin, p, shard_.numel());  // in place
}

int64_t ZeroOptimizer::grad_buffer_bytes() const {
  return store_.flat_grads().numel() * static_cast<int64_t>(sizeof(float));
}

double ZeroOptimizer::formula_bytes_per_step() const {
  const int dp = groups_.data().size();
  return 2.0 * static_cast<double>(grad_buffer_bytes()) * (dp - 1) / dp;
}

}  // namespace nupipe::optim
