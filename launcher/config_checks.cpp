// config_checks.cpp: the range and consistency rules of every config key, in one place
// (the stage split's rules are delegated to parallel::make_stage_layout).
#include "launcher/config_checks.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <string>

#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stage_layout.h"

namespace nupipe::launcher {

const char* family_refuses(std::string_view key, std::string_view family) {
  struct Only {
    std::string_view key, family;
    const char* why;
  };
  // Each family's own keys; every other model key applies to both.
  static constexpr Only kOnly[] = {
      {"model.ln_eps", "gpt2", "LayerNorm's epsilon is a gpt2 key; llama's RMSNorm takes "
                               "model.norm_eps"},
      {"model.n_kv_head", "llama", "grouped-query attention is a llama key; gpt2 has one "
                                   "key/value head per query head"},
      {"model.ffn_hidden", "llama", "the SwiGLU width is a llama key; gpt2's MLP is 4 x "
                                    "model.d_model wide"},
      {"model.rope_theta", "llama", "rotary embeddings are a llama key; gpt2 learns its "
                                    "position embeddings"},
      {"model.norm_eps", "llama", "RMSNorm's epsilon is a llama key; gpt2's LayerNorm takes "
                                  "model.ln_eps"},
      {"model.lfa", "llama", "Yuan 2.0's localized filtering is built on the llama block; "
                             "gpt2's attention has none"},
  };
  for (const Only& o : kOnly)
    if (o.key == key && o.family != family) return o.why;
  return nullptr;
}

std::vector<std::string> validate(const Config& c, const Checker& ck) {
  using S = std::string;
  std::vector<std::string> warnings;
  const auto& m = c.model;
  ck.one_of("model.family", m.family, {"gpt2", "llama"},
            "\"gpt2\": LayerNorm, learned positions, GELU MLP, biases; \"llama\": RMSNorm, "
            "rotary positions, SwiGLU MLP, grouped-query attention, no biases");
  for (const std::string& key : c.given) {
    if (const char* why = family_refuses(key, m.family))
      ck.fail(key, key + " does not apply to model.family = " + quote(m.family) + ": " + why,
              "remove " + key + ", or set model.family to the family it belongs to");
  }
  ck.at_least("model.n_layer", m.n_layer, 1);
  ck.at_least("model.d_model", m.d_model, 1);
  ck.at_least("model.n_head", m.n_head, 1);
  if (m.d_model % m.n_head != 0)
    ck.fail("model.d_model", "model.d_model = " + S(ck.str(m.d_model)) +
                                 " is not divisible by model.n_head = " + ck.str(m.n_head),
            "choose model.n_head dividing model.d_model (head size = d_model / n_head)");
  if (m.llama()) {
    ck.at_least("model.n_kv_head", m.n_kv_head, 0);
    if (m.n_kv_head > 0 && m.n_head % m.n_kv_head != 0)
      ck.fail("model.n_kv_head", "model.n_kv_head = " + ck.str(m.n_kv_head) +
                                     " does not divide model.n_head = " + ck.str(m.n_head),
              "each key/value head serves n_head / n_kv_head query heads: choose a divisor of "
              "model.n_head (= n_head is plain multi-head attention; 0 means n_head)");
    if (m.head_dim() % 2 != 0)
      ck.fail("model.n_head", "the head size model.d_model / model.n_head = " +
                                  ck.str(m.head_dim()) + " is odd",
              "rotary embeddings rotate pairs of a head's dimensions: choose an even head size");
    ck.at_least("model.ffn_hidden", m.ffn_hidden, 0);
    ck.positive("model.rope_theta", m.rope_theta);
    ck.positive("model.norm_eps", m.norm_eps);
    if (m.lfa && m.kv_heads() != m.n_head)
      ck.fail("model.lfa", "model.lfa = true with model.n_kv_head = " + ck.str(m.n_kv_head) +
                               " < model.n_head = " + ck.str(m.n_head) +
                               ": Yuan 2.0's localized filtering attention is multi-head",
              "set model.n_kv_head = model.n_head (or 0), or model.lfa = false");
    // (The filter halves the width: d_model is even already, n_head times an even head size.)
  }
  ck.within("model.vocab_size", m.vocab_size, 2, 65536, true,
            "tokens are stored as uint16: model.vocab_size can be at most 65536");
  ck.at_least("model.seq_len", m.seq_len, 1);
  ck.positive("model.init_std", m.init_std);
  ck.positive("model.ln_eps", m.ln_eps);

  const auto& d = c.data;
  if (d.train.empty())
    ck.fail("data.train", "data.train is empty",
            "set data.train to \"synthetic\" or the path of a token file");
  if (d.train == "synthetic" || d.val == "synthetic") {  // checked only when the corpus is used
    const auto& s = d.synthetic;
    ck.at_least("data.synthetic.order", s.order, 1);
    if (s.alphabet < 2 || s.alphabet > m.vocab_size)
      ck.fail("data.synthetic.alphabet",
              "data.synthetic.alphabet = " + ck.str(s.alphabet) + " must be in [2, model.vocab_size = " +
                  ck.str(m.vocab_size) + "]",
              "the synthetic tokens are ids 0 .. alphabet-1 and must fit the vocabulary: lower "
              "data.synthetic.alphabet or raise model.vocab_size");
    ck.within("data.synthetic.branching", s.branching, 1, s.alphabet, true,
              "each context has between 1 and data.synthetic.alphabet successors");
    constexpr int64_t kMaxContexts = 4194304;
    int64_t contexts = 1;
    for (int i = 0; i < s.order && contexts <= kMaxContexts; ++i) contexts *= s.alphabet;
    if (contexts > kMaxContexts)
      ck.fail("data.synthetic.order",
              "data.synthetic.alphabet ^ data.synthetic.order = " + ck.str(s.alphabet) + "^" +
                  ck.str(s.order) + " is more than " + ck.str(kMaxContexts) + " contexts",
              "lower data.synthetic.order or data.synthetic.alphabet (the chain has one row per "
              "context)");
    if (!(s.smoothing > 0 && s.smoothing < 1))
      ck.fail("data.synthetic.smoothing",
              "data.synthetic.smoothing must be in (0, 1), got " + ck.str(s.smoothing),
              "it is the probability spread uniformly over the alphabet; a small positive value "
              "such as 0.02 keeps every token reachable");
    for (const auto& [key, n] : {std::pair<const char*, int64_t>{"data.synthetic.train_tokens", s.train_tokens},
                                 {"data.synthetic.val_tokens", s.val_tokens}})
      if (n <= int64_t{m.seq_len} + 1)
        ck.fail(key, S(key) + " = " + ck.str(n) + " must be > model.seq_len + 1 = " +
                         ck.str(m.seq_len + 1),
                "a stream must hold at least one sequence plus its next-token targets");
  }

  const auto& p = c.parallel;
  ck.at_least("parallel.pipeline", p.pipeline, 1);
  ck.at_least("parallel.data", p.data, 1);
  // The split's rules live in parallel/pipeline/stage_layout (one place); its refusal is
  // reported at the key that most likely caused it.
  const bool planned = p.stage_layers.kind == parallel::StageLayersSpec::Kind::automatic;
  parallel::StageLayout layout;
  try {
    if (planned) {
      if (p.pipeline > m.n_layer + 2)  // make_stage_layout says why no split exists
        parallel::make_stage_layout(p.stage_layers, p.pipeline, m.n_layer);
    } else {
      layout = parallel::make_stage_layout(p.stage_layers, p.pipeline, m.n_layer);
    }
  } catch (const Error& e) {
    ck.fail(ck.first_set({"parallel.stage_layers", "parallel.pipeline", "model.n_layer"}), e.what(),
            e.hint());
  }
  const auto& rc = c.train.recompute;
  if (planned && rc.kind == parallel::RecomputeSpec::Kind::per_stage)
    ck.fail("train.recompute",
            "train.recompute = " + parallel::format_recompute(rc) +
                " gives blocks per stage, but parallel.stage_layers = \"auto\" chooses the stages",
            "with the planner use train.recompute = \"auto\" (it chooses), \"none\" or \"full\"");
  if (!planned) {
    try {
      parallel::recompute_blocks(rc, layout);
    } catch (const Error& e) {
      ck.fail(ck.first_set({"train.recompute", "parallel.pipeline", "parallel.stage_layers"}),
              e.what(), e.hint());
    }
  }
  ck.within("parallel.zero", p.zero, 0, 1, true,
            "set parallel.zero = 0 (replicated optimizer state) or 1 (ZeRO-1: sharded over the "
            "data-parallel ranks of each stage)");
  {  // the names come from one list, parallel/pipeline/schedule.h's schedules(), and "auto"
    bool known = p.schedule == "auto";
    std::string names;
    for (const parallel::ScheduleInfo& i : parallel::schedules()) {
      known = known || p.schedule == i.name;
      names += std::string(names.empty() ? "" : ", ") + "\"" + i.name + "\"";
    }
    if (!known) {
      ck.fail("parallel.schedule",
              "parallel.schedule must be " + names + " or \"auto\", got \"" + p.schedule + "\"",
              "set parallel.schedule = \"1f1b\" (least activation memory of the fused "
              "schedules), \"zb-h1\" (the same peak in microbatches, a smaller bubble) or "
              "\"auto\" (the shortest simulated step within the memory budget)");
    }
  }

  const auto& t = c.train;
  ck.at_least("train.steps", t.steps, 1);
  ck.at_least("train.global_batch", t.global_batch, 1);
  ck.at_least("train.micro_batch", t.micro_batch, 1);
  const int64_t per_step = int64_t{t.micro_batch} * p.data;
  if (t.global_batch % per_step != 0) {
    const int64_t below = t.global_batch / per_step * per_step;
    ck.fail("train.global_batch",
            "train.global_batch = " + ck.str(t.global_batch) +
                " is not a multiple of train.micro_batch x parallel.data = " +
                ck.str(t.micro_batch) + " x " + ck.str(p.data),
            "set train.global_batch to a multiple of " + ck.str(per_step) + " (e.g. " +
                (below > 0 ? ck.str(below) + " or " : S()) + ck.str(below + per_step) +
                "), or change train.micro_batch");
  }
  ck.at_least("train.val_every", t.val_every, 0);
  ck.at_least("train.val_batches", t.val_batches, 1);
  ck.at_least("train.loss_chunk", t.loss_chunk, 0);

  const auto& a = c.adamw;
  ck.positive("optim.lr", a.lr);
  ck.within("optim.beta1", a.beta1, 0.0f, 1.0f, false);
  ck.within("optim.beta2", a.beta2, 0.0f, 1.0f, false);
  ck.positive("optim.eps", a.eps);
  ck.at_least("optim.weight_decay", a.weight_decay, 0.0f);
  ck.at_least("optim.warmup_steps", c.lr.warmup_steps, 0);
  if (c.lr.warmup_steps > t.steps)
    warnings.push_back("optim.warmup_steps = " + ck.str(c.lr.warmup_steps) +
                       " is more than train.steps = " + ck.str(t.steps) +
                       ": the learning rate never finishes warming up (it reaches " +
                       ck.str(static_cast<double>(t.steps) / c.lr.warmup_steps) +
                       " of optim.lr at the last step)");
  ck.within("optim.min_lr_ratio", c.lr.min_lr_ratio, 0.0f, 1.0f, true);
  ck.at_least("optim.grad_clip", c.clip.max_norm, 0.0f);

  if (c.run.dir.empty())
    ck.fail("run.dir", "run.dir is empty", "set run.dir to the directory for this run's outputs");
  ck.at_least("run.log_every", c.run.log_every, 1);
  ck.one_of("runtime.device", c.runtime.device, {"cpu", "cuda"},
            "set runtime.device = \"cpu\" (or \"cuda\" on a GPU build)");
  // More threads than any host has cores is a typo (OpenMP would try to reserve a stack for
  // each, and abort); fewer than the cores, or somewhat more, is the user's choice.
  ck.within("runtime.threads", c.runtime.threads, 0, 4096, true,
            "set runtime.threads = 0 (the host's cores divided by the ranks on it) or a count of "
            "at most 4096");
  ck.one_of("runtime.comm", c.runtime.comm, {"auto", "nccl", "mpi"},
            "\"auto\": NCCL when every rank has its own GPU, MPI otherwise; \"nccl\" or "
            "\"mpi\" to choose");
  if (c.runtime.comm == "nccl" && c.runtime.device == "cpu")
    ck.fail("runtime.comm", "runtime.comm = \"nccl\" needs runtime.device = \"cuda\"",
            "set runtime.comm = \"auto\" or \"mpi\" for the cpu backend");
  ck.one_of("runtime.attention", c.runtime.attention, {"auto", "fused", "unfused"},
            "\"fused\": no [T,T] matrices kept (an fp32 log-sum-exp per row and head); "
            "\"unfused\": batched GEMMs and a causal softmax, the reference; \"auto\": fused on "
            "the cpu, unfused on cuda");
  if (c.runtime.device == "cuda" && c.runtime.attention == "fused" && c.model.n_head > 0) {
    const int hd = c.model.d_model / c.model.n_head;
    if (hd != 16 && hd != 32 && hd != 64 && hd != 128)
      ck.fail("runtime.attention",
              "runtime.attention = \"fused\" on cuda has kernels for head sizes 16, 32, 64 and "
              "128; model.d_model / model.n_head is " + ck.str(hd),
              "set runtime.attention = \"unfused\", or choose d_model and n_head with one of "
              "those head sizes");
  }
  ck.one_of("runtime.precision", c.runtime.precision, {"fp32", "bf16"},
            "\"fp32\": everything in fp32; \"bf16\": bf16 parameters and activations with "
            "fp32 master weights, optimizer state, gradients and loss");
  for (const auto& [key, values, zero_ok] :
       {std::tuple<const char*, const std::vector<double>*, bool>{"runtime.memory_gib",
                                                                  &c.runtime.memory_gib, true},
        {"runtime.tflops", &c.runtime.tflops, false}}) {
    if (values->size() != 1 && static_cast<int>(values->size()) != p.pipeline)
      ck.fail(key, S(key) + " gives " + ck.str(values->size()) + " values for parallel.pipeline = " +
                       ck.str(p.pipeline) + " stages",
              "give one number for every stage, or one per stage");
    for (double v : *values) {
      if (v < 0 || (!zero_ok && v == 0))
        ck.fail(key, S(key) + " must be " + (zero_ok ? ">= 0" : "> 0") + ", got " + ck.str(v),
                zero_ok ? "0 means: the host's available memory divided by its ranks"
                        : "give each stage's throughput in TFLOP/s");
    }
  }
  if (!c.runtime.calibration.empty() &&
      std::adjacent_find(c.runtime.tflops.begin(), c.runtime.tflops.end(),
                         std::not_equal_to<>()) != c.runtime.tflops.end())
    ck.fail("runtime.calibration",
            "runtime.calibration times every stage by one machine's passes, but runtime.tflops "
            "gives stages of different speeds, which it would ignore",
            "leave runtime.calibration out to plan by runtime.tflops, or drop the per-stage "
            "runtime.tflops ([[runtime.devices]]) to plan by the calibration");
  if (!(c.runtime.peer_timeout_s >= 1.0))
    ck.fail("runtime.peer_timeout_s",
            "runtime.peer_timeout_s must be >= 1, got " + ck.str(c.runtime.peer_timeout_s),
            "it is how long a rank waits for a silent peer before exiting with code 5; the "
            "default is 60");

  const auto& k = c.checkpoint;
  ck.at_least("checkpoint.every", k.every, 0);
  ck.at_least("checkpoint.keep", k.keep, 1);
  ck.at_least("checkpoint.keep_every", k.keep_every, 0);
  if (k.keep_every > 0 && k.every > 0 && k.keep_every % k.every != 0)
    ck.fail("checkpoint.keep_every",
            "checkpoint.keep_every = " + ck.str(k.keep_every) +
                " is not a multiple of checkpoint.every = " + ck.str(k.every) +
                ": few or no saves would land on a milestone",
            "set checkpoint.keep_every to a multiple of checkpoint.every, e.g. " +
                ck.str(k.every * std::max(1, k.keep_every / k.every)) + ", or 0 for none");
  if (k.keep_every > 0 && k.every == 0)
    warnings.push_back("checkpoint.keep_every = " + ck.str(k.keep_every) +
                       " has no interval saves to keep (checkpoint.every = 0)");
  if (k.resume.empty())
    ck.fail("checkpoint.resume", "checkpoint.resume is empty",
            "set checkpoint.resume = \"auto\" (continue from the newest checkpoint), \"never\" "
            "or the path of a checkpoint directory");
  ck.one_of("checkpoint.on_signal", k.on_signal, {"save", "exit"},
            "\"save\": SIGTERM/SIGINT finish the step, save a checkpoint and exit 0; \"exit\": "
            "finish the step and exit 0 without saving");
  ck.one_of("checkpoint.on_write_error", k.on_write_error, {"stop", "continue"},
            "\"stop\": a failed save ends the run with exit code 4; \"continue\": keep training "
            "and try again at the next interval");
  return warnings;
}

}  // namespace nupipe::launcher
