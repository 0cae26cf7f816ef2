// test_config.cpp: the TOML config loader: defaults, the shipped configs, every error naming
// its key with exit code 2, --set overrides, and the to_toml round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "launcher/config.h"
#include "runtime/error.h"

namespace nupipe::launcher {
namespace {

std::filesystem::path repo_root() {
#ifdef NUPIPE_SOURCE_DIR
  return NUPIPE_SOURCE_DIR;
#else
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
#endif
}

// The usage error that parsing `text` must raise; its message and hint are checked non-empty.
Error error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "test.toml", overrides);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    return e;
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return Error(ExitCode::ok, "(no error)");
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.model.n_layer, b.model.n_layer);
  EXPECT_EQ(a.model.d_model, b.model.d_model);
  EXPECT_EQ(a.model.n_head, b.model.n_head);
  EXPECT_EQ(a.model.vocab_size, b.model.vocab_size);
  EXPECT_EQ(a.model.seq_len, b.model.seq_len);
  EXPECT_EQ(a.model.tie_embeddings, b.model.tie_embeddings);
  EXPECT_TRUE(same_bits(a.model.init_std, b.model.init_std)) << a.model.init_std;
  EXPECT_TRUE(same_bits(a.model.ln_eps, b.model.ln_eps)) << a.model.ln_eps;
  EXPECT_EQ(a.data.train, b.data.train);
  EXPECT_EQ(a.data.val, b.data.val);
  EXPECT_EQ(a.data.synthetic.order, b.data.synthetic.order);
  EXPECT_EQ(a.data.synthetic.alphabet, b.data.synthetic.alphabet);
  EXPECT_EQ(a.data.synthetic.branching, b.data.synthetic.branching);
  EXPECT_TRUE(same_bits(a.data.synthetic.smoothing, b.data.synthetic.smoothing))
      << a.data.synthetic.smoothing;
  EXPECT_EQ(a.data.synthetic.train_tokens, b.data.synthetic.train_tokens);
  EXPECT_EQ(a.data.synthetic.val_tokens, b.data.synthetic.val_tokens);
  EXPECT_EQ(a.data.synthetic.seed, b.data.synthetic.seed);
  EXPECT_EQ(a.parallel.pipeline, b.parallel.pipeline);
  EXPECT_EQ(a.parallel.data, b.parallel.data);
  EXPECT_EQ(a.parallel.stage_layers.kind, b.parallel.stage_layers.kind);
  EXPECT_EQ(a.parallel.stage_layers.layers, b.parallel.stage_layers.layers);
  EXPECT_EQ(a.parallel.schedule, b.parallel.schedule);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.global_batch, b.train.global_batch);
  EXPECT_EQ(a.train.micro_batch, b.train.micro_batch);
  EXPECT_EQ(a.train.val_every, b.train.val_every);
  EXPECT_EQ(a.train.val_batches, b.train.val_batches);
  EXPECT_EQ(a.train.loss_chunk, b.train.loss_chunk);
  EXPECT_EQ(a.train.recompute, b.train.recompute);
  EXPECT_TRUE(same_bits(a.adamw.lr, b.adamw.lr)) << a.adamw.lr;
  EXPECT_TRUE(same_bits(a.adamw.beta1, b.adamw.beta1)) << a.adamw.beta1;
  EXPECT_TRUE(same_bits(a.adamw.beta2, b.adamw.beta2)) << a.adamw.beta2;
  EXPECT_TRUE(same_bits(a.adamw.eps, b.adamw.eps)) << a.adamw.eps;
  EXPECT_TRUE(same_bits(a.adamw.weight_decay, b.adamw.weight_decay)) << a.adamw.weight_decay;
  EXPECT_EQ(a.lr.warmup_steps, b.lr.warmup_steps);
  EXPECT_TRUE(same_bits(a.lr.min_lr_ratio, b.lr.min_lr_ratio)) << a.lr.min_lr_ratio;
  EXPECT_EQ(a.lr.total_steps, b.lr.total_steps);
  EXPECT_TRUE(same_bits(a.clip.max_norm, b.clip.max_norm)) << a.clip.max_norm;
  EXPECT_EQ(a.run.dir, b.run.dir);
  EXPECT_EQ(a.run.log_every, b.run.log_every);
  EXPECT_EQ(a.runtime.device, b.runtime.device);
  EXPECT_EQ(a.runtime.precision, b.runtime.precision);
  EXPECT_EQ(a.runtime.flush_denormals, b.runtime.flush_denormals);
  EXPECT_EQ(a.runtime.gemm_epilogues, b.runtime.gemm_epilogues);
  EXPECT_EQ(a.runtime.comm, b.runtime.comm);
  EXPECT_EQ(a.runtime.attention, b.runtime.attention);
  EXPECT_EQ(a.runtime.threads, b.runtime.threads);
  EXPECT_EQ(a.runtime.peer_timeout_s, b.runtime.peer_timeout_s);
  EXPECT_EQ(a.runtime.memory_gib, b.runtime.memory_gib);
  EXPECT_EQ(a.runtime.tflops, b.runtime.tflops);
  EXPECT_EQ(a.runtime.calibration, b.runtime.calibration);
  EXPECT_EQ(a.checkpoint.every, b.checkpoint.every);
  EXPECT_EQ(a.checkpoint.keep, b.checkpoint.keep);
  EXPECT_EQ(a.checkpoint.keep_every, b.checkpoint.keep_every);
  EXPECT_EQ(a.checkpoint.dir, b.checkpoint.dir);
  EXPECT_EQ(a.checkpoint.resume, b.checkpoint.resume);
  EXPECT_EQ(a.checkpoint.strict, b.checkpoint.strict);
  EXPECT_EQ(a.checkpoint.on_signal, b.checkpoint.on_signal);
  EXPECT_EQ(a.checkpoint.on_write_error, b.checkpoint.on_write_error);
  EXPECT_EQ(a.checkpoint.async, b.checkpoint.async);
}

// Every key set away from its default (so a key read into the wrong field shows).
const char* kEveryKey = R"(
[model]
n_layer = 3
d_model = 96
n_head = 6
vocab_size = 300
seq_len = 33
tie_embeddings = false
init_std = 0.0123456789
ln_eps = 1e-6
[data]
train = "path/with \"quotes\" and \\ back\tslash é"
val = "synthetic"
[data.synthetic]
order = 3
alphabet = 20
branching = 5
smoothing = 0.30000000000000004
train_tokens = 1000000000000
val_tokens = 5000
seed = 9223372036854775807
[parallel]
pipeline = 3
data = 2
stage_layers = [0, 2, 1]
schedule = "gpipe"
[train]
steps = 77
seed = 0
global_batch = 12
micro_batch = 3
val_every = 0
val_batches = 2
recompute = [0, 1, 1]
[optim]
lr = 3.0000001e-4
beta1 = 0
beta2 = 0.999
eps = 1e-45
weight_decay = 0
warmup_steps = 77
min_lr_ratio = 1
grad_clip = 0
[checkpoint]
every = 9
keep = 4
keep_every = 27
dir = "/ckpt/x"
resume = "never"
strict = true
on_signal = "exit"
on_write_error = "continue"
async = true
[run]
dir = "runs/x"
log_every = 7
[runtime]
device = "cuda"
precision = "bf16"
flush_denormals = true
comm = "mpi"
threads = 3
peer_timeout_s = 12.5
memory_gib = [7.25, 8, 9]
tflops = [1.5, 2.5, 3]
)";

TEST(Config, DefaultsFromEmptyString) {
  const Config c = parse_config("", "empty");
  expect_same(c, [] { Config d; d.lr.total_steps = d.train.steps; return d; }());
  EXPECT_EQ(c.lr.total_steps, c.train.steps);
  EXPECT_EQ(c.microbatches(), 2);
}

TEST(Config, EveryKeyReachesItsField) {
  const Config c = parse_config(kEveryKey, "every");
  EXPECT_EQ(c.model.n_layer, 3);
  EXPECT_EQ(c.model.d_model, 96);
  EXPECT_EQ(c.model.n_head, 6);
  EXPECT_EQ(c.model.vocab_size, 300);
  EXPECT_EQ(c.model.seq_len, 33);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.model.init_std, 0.0123456789f);
  EXPECT_EQ(c.model.ln_eps, 1e-6f);
  EXPECT_EQ(c.data.train, "path/with \"quotes\" and \\ back\tslash é");
  EXPECT_EQ(c.data.val, "synthetic");
  EXPECT_EQ(c.data.synthetic.order, 3);
  EXPECT_EQ(c.data.synthetic.alphabet, 20);
  EXPECT_EQ(c.data.synthetic.branching, 5);
  EXPECT_EQ(c.data.synthetic.smoothing, 0.1 + 0.2);
  EXPECT_EQ(c.data.synthetic.train_tokens, 1000000000000);
  EXPECT_EQ(c.data.synthetic.val_tokens, 5000);
  EXPECT_EQ(c.data.synthetic.seed, uint64_t{9223372036854775807u});
  EXPECT_EQ(c.parallel.pipeline, 3);
  EXPECT_EQ(c.parallel.data, 2);
  EXPECT_EQ(c.parallel.stage_layers.kind, parallel::StageLayersSpec::Kind::explicit_list);
  EXPECT_EQ(c.parallel.stage_layers.layers, (std::vector<int>{0, 2, 1}));
  EXPECT_EQ(c.parallel.schedule, "gpipe");
  EXPECT_EQ(c.train.steps, 77);
  EXPECT_EQ(c.train.seed, 0u);
  EXPECT_EQ(c.train.global_batch, 12);
  EXPECT_EQ(c.train.micro_batch, 3);
  EXPECT_EQ(c.microbatches(), 2);  // 12 / (3 x 2 replicas)
  EXPECT_EQ(c.train.val_every, 0);
  EXPECT_EQ(c.train.val_batches, 2);
  EXPECT_EQ(c.adamw.lr, 3.0000001e-4f);
  EXPECT_EQ(c.adamw.beta1, 0.0f);
  EXPECT_EQ(c.adamw.beta2, 0.999f);
  EXPECT_EQ(c.adamw.eps, 1e-45f);
  EXPECT_EQ(c.adamw.weight_decay, 0.0f);
  EXPECT_EQ(c.lr.warmup_steps, 77);
  EXPECT_EQ(c.lr.min_lr_ratio, 1.0f);
  EXPECT_EQ(c.lr.total_steps, 77);
  EXPECT_EQ(c.clip.max_norm, 0.0f);
  EXPECT_EQ(c.run.dir, "runs/x");
  EXPECT_EQ(c.run.log_every, 7);
  EXPECT_EQ(c.runtime.device, "cuda");
  EXPECT_EQ(c.runtime.precision, "bf16");
  EXPECT_TRUE(c.runtime.flush_denormals);
  EXPECT_EQ(c.runtime.comm, "mpi");
  EXPECT_EQ(parse_precision(c.runtime.precision), runtime::DType::bf16);
  EXPECT_EQ(c.runtime.threads, 3);
}

TEST(Config, ShippedConfigsParse) {
  const auto configs = repo_root() / "configs";
  ASSERT_TRUE(std::filesystem::exists(configs / "tiny.toml")) << configs;
  const Config tiny = load_config((configs / "tiny.toml").string());
  EXPECT_EQ(tiny.model.n_layer, 4);
  EXPECT_EQ(tiny.data.val, "synthetic");
  EXPECT_EQ(tiny.lr.total_steps, tiny.train.steps);
  EXPECT_EQ(tiny.microbatches(), 4);  // 16 = 2 per micro-batch x 4 x 2 replicas
  EXPECT_EQ(tiny.run.dir, "runs/tiny");
  EXPECT_EQ(tiny.parallel.pipeline, 2);
  EXPECT_EQ(tiny.parallel.data, 2);
  EXPECT_EQ(tiny.parallel.stage_layers.kind, parallel::StageLayersSpec::Kind::explicit_list);
  EXPECT_EQ(tiny.parallel.stage_layers.layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(tiny.parallel.schedule, "1f1b");

  const Config gpt2 = load_config((configs / "gpt2-124m.toml").string());
  EXPECT_EQ(gpt2.model.n_layer, 12);
  EXPECT_EQ(gpt2.model.d_model, 768);
  EXPECT_EQ(gpt2.model.n_head, 12);
  EXPECT_EQ(gpt2.model.vocab_size, 50257);
  EXPECT_EQ(gpt2.model.seq_len, 1024);
  EXPECT_TRUE(gpt2.model.tie_embeddings);
  EXPECT_EQ(gpt2.microbatches(), 8);
  EXPECT_EQ(gpt2.run.dir, "runs/gpt2-124m");
}

TEST(Config, UnknownKeyNamedWithSuggestion) {
  const Error e = error_of("[model]\nn_layer = 2\nn_layers = 4\n");
  EXPECT_CONTAINS(e.what(), "unknown key 'model.n_layers'");
  EXPECT_CONTAINS(e.what(), "did you mean 'model.n_layer'?");
  EXPECT_CONTAINS(e.what(), "test.toml:3:");
  // The same key name in another section, and an abbreviation, are suggested too.
  EXPECT_CONTAINS(error_of("[train]\nlr = 0.1\n").what(), "did you mean 'optim.lr'?");
  EXPECT_CONTAINS(error_of("[optim]\nwarmup = 3\n").what(), "did you mean 'optim.warmup_steps'?");
  EXPECT_CONTAINS(error_of("n_layer = 3\n").what(), "unknown key 'n_layer'");
  EXPECT_CONTAINS(error_of("[data.synthetic]\nsmoothin = 0.1\n").what(),
                  "'data.synthetic.smoothin' (did you mean 'data.synthetic.smoothing'?)");
}

TEST(Config, UnknownSectionRefused) {
  const Error e = error_of("[modle]\nn_layer = 4\n");
  EXPECT_CONTAINS(e.what(), "unknown section 'modle'");
  EXPECT_CONTAINS(e.what(), "did you mean 'model'?");
  EXPECT_CONTAINS(error_of("[checkpoint]\nevry = 100\n").what(),
                  "unknown key 'checkpoint.evry' (did you mean 'checkpoint.every'?)");
  EXPECT_CONTAINS(error_of("[data.synth]\norder = 2\n").what(), "'data.synth'");
  EXPECT_CONTAINS(error_of("model = 3\n").what(), "model must be a table, got integer");
}

TEST(Config, FirstProblemInTheFileIsReported) {
  const Error e = error_of("[train]\nsteps = \"x\"\n[model]\nbogus = 1\n");
  EXPECT_CONTAINS(e.what(), "train.steps must be an integer, got string");
}

TEST(Config, WrongTypeNamed) {
  const Error e = error_of("[model]\nd_model = \"64\"\n");
  EXPECT_CONTAINS(e.what(), "model.d_model must be an integer, got string");
  EXPECT_CONTAINS(e.hint(), "model.d_model = 64");
  EXPECT_CONTAINS(error_of("[model]\nn_layer = 4.0\n").what(),
                  "model.n_layer must be an integer, got float");
  EXPECT_CONTAINS(error_of("[model]\ntie_embeddings = 1\n").what(),
                  "model.tie_embeddings must be a boolean");
  EXPECT_CONTAINS(error_of("[optim]\nlr = \"fast\"\n").what(), "optim.lr must be a number, got string");
  EXPECT_CONTAINS(error_of("[run]\ndir = 5\n").what(), "run.dir must be a string, got integer");
  EXPECT_CONTAINS(error_of("[model]\nd_model = 3000000000\n").what(), "model.d_model");
  EXPECT_CONTAINS(error_of("[optim]\nlr = 1e39\n").what(), "optim.lr");   // float overflow
  EXPECT_CONTAINS(error_of("[optim]\nlr = nan\n").what(), "optim.lr");
  EXPECT_CONTAINS(error_of("[train]\nseed = -1\n").what(), "train.seed");
  // Floats accept integers.
  EXPECT_EQ(parse_config("[optim]\nlr = 1\n", "t").adamw.lr, 1.0f);
}

TEST(Config, BatchArithmeticShown) {
  const Error e = error_of("[train]\nglobal_batch = 20\nmicro_batch = 8\n");
  EXPECT_CONTAINS(e.what(),
                  "train.global_batch = 20 is not a multiple of train.micro_batch x "
                  "parallel.data = 8 x 1");
  EXPECT_CONTAINS(e.hint(), "16 or 24");
}

TEST(Config, HeadsMustDivideWidth) {
  const Error e = error_of("[model]\nd_model = 64\nn_head = 5\n");
  EXPECT_CONTAINS(e.what(), "model.d_model");
  EXPECT_CONTAINS(e.what(), "model.n_head");
}

TEST(Config, AlphabetMustFitVocabulary) {
  const Error e = error_of("[model]\nvocab_size = 8\n");
  EXPECT_CONTAINS(e.what(), "data.synthetic.alphabet");
  EXPECT_CONTAINS(e.what(), "model.vocab_size");
  // The synthetic options are checked only when the synthetic corpus is used.
  EXPECT_EQ(parse_config("[model]\nvocab_size = 8\n[data]\ntrain = \"tok.bin\"\n", "t")
                .model.vocab_size,
            8);
  EXPECT_CONTAINS(error_of("[model]\nvocab_size = 8\n[data]\ntrain = \"t.bin\"\nval = "
                           "\"synthetic\"\n")
                      .what(),
                  "data.synthetic.alphabet");
}

TEST(Config, MultiRankAccepted) {
  const Config dp = parse_config("[parallel]\ndata = 2\n", "t");
  EXPECT_EQ(dp.parallel.data, 2);
  EXPECT_EQ(dp.microbatches(), 1);  // 16 / (8 x 2)
  const Config pp = parse_config("[parallel]\npipeline = 4\n", "t");  // 4 blocks, 4 stages
  EXPECT_EQ(pp.parallel.pipeline, 4);
  EXPECT_EQ(pp.parallel.stage_layers.kind, parallel::StageLayersSpec::Kind::uniform);
  const Config both = parse_config(
      "[model]\nn_layer = 10\n[parallel]\npipeline = 4\ndata = 2\n[train]\nglobal_batch = 64\n",
      "t");
  EXPECT_EQ(both.parallel.pipeline * both.parallel.data, 8);
  EXPECT_EQ(both.microbatches(), 4);
  // The batch arithmetic counts the replicas.
  EXPECT_CONTAINS(error_of("[parallel]\ndata = 3\n").what(),
                  "train.micro_batch x parallel.data = 8 x 3");
}

TEST(Config, EveryRangeCheckNamesItsKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[model]\nn_layer = 0", "model.n_layer"},
      {"[model]\nd_model = 0", "model.d_model"},
      {"[model]\nn_head = 0", "model.n_head"},
      {"[model]\nvocab_size = 1", "model.vocab_size"},
      {"[model]\nvocab_size = 65537", "model.vocab_size"},
      {"[model]\nseq_len = 0", "model.seq_len"},
      {"[model]\ninit_std = 0", "model.init_std"},
      {"[model]\nln_eps = -1e-5", "model.ln_eps"},
      {"[data]\ntrain = \"\"", "data.train"},
      {"[data.synthetic]\norder = 0", "data.synthetic.order"},
      {"[data.synthetic]\nalphabet = 1\nbranching = 1", "data.synthetic.alphabet"},
      {"[data.synthetic]\nbranching = 0", "data.synthetic.branching"},
      {"[data.synthetic]\nbranching = 65", "data.synthetic.branching"},
      {"[data.synthetic]\norder = 4", "data.synthetic.order"},  // 64^4 > 4194304
      {"[data.synthetic]\nsmoothing = 1.0", "data.synthetic.smoothing"},
      {"[data.synthetic]\nsmoothing = -0.1", "data.synthetic.smoothing"},
      {"[data.synthetic]\nsmoothing = 0", "data.synthetic.smoothing"},
      {"[data.synthetic]\ntrain_tokens = 65", "data.synthetic.train_tokens"},
      {"[data.synthetic]\nval_tokens = 10", "data.synthetic.val_tokens"},
      {"[parallel]\npipeline = 0", "parallel.pipeline"},
      {"[parallel]\ndata = -1", "parallel.data"},
      {"[parallel]\nstage_layers = [1, 3]", "parallel.stage_layers"},
      {"[parallel]\nstage_layers = [-1, 5]\npipeline = 2", "parallel.stage_layers"},
      {"[runtime]\nmemory_gib = -1", "runtime.memory_gib"},
      {"[runtime]\nmemory_gib = [1, 2, 3]", "runtime.memory_gib"},
      {"[runtime]\ntflops = 0", "runtime.tflops"},
      {"[runtime]\ncalibration = \"c.json\"\ntflops = [1, 2]\n[parallel]\npipeline = 2",
       "runtime.calibration"},  // a calibration times every stage alike
      {"[runtime]\nmemory_gib = []", "runtime.memory_gib"},
      {"[parallel]\npipeline = 7", "parallel.stage_layers"},  // 4 blocks cannot fill 7 stages
      {"[parallel]\nschedule = \"\"", "parallel.schedule"},
      {"[train]\nsteps = 0", "train.steps"},
      {"[train]\nglobal_batch = 0", "train.global_batch"},
      {"[train]\nmicro_batch = 0", "train.micro_batch"},
      {"[train]\nval_every = -1", "train.val_every"},
      {"[train]\nval_batches = 0", "train.val_batches"},
      {"[optim]\nlr = 0", "optim.lr"},
      {"[optim]\nbeta1 = 1.0", "optim.beta1"},
      {"[optim]\nbeta2 = -0.5", "optim.beta2"},
      {"[optim]\neps = 0", "optim.eps"},
      {"[optim]\nweight_decay = -0.1", "optim.weight_decay"},
      {"[optim]\nwarmup_steps = -1", "optim.warmup_steps"},
      {"[checkpoint]\nevery = -1", "checkpoint.every"},
      {"[train]\nrecompute = \"some\"", "train.recompute"},
      {"[train]\nrecompute = [3, 0]\nglobal_batch = 8\n[parallel]\npipeline = 2",
       "train.recompute"},
      {"[train]\nrecompute = [1]\nglobal_batch = 8\n[parallel]\npipeline = 2", "train.recompute"},
      {"[checkpoint]\nkeep = 0", "checkpoint.keep"},
      {"[checkpoint]\nkeep_every = -2", "checkpoint.keep_every"},
      {"[checkpoint]\nkeep_every = 25\nevery = 10", "checkpoint.keep_every"},
      {"[checkpoint]\nresume = \"\"", "checkpoint.resume"},
      {"[checkpoint]\non_signal = \"ignore\"", "checkpoint.on_signal"},
      {"[checkpoint]\non_write_error = \"retry\"", "checkpoint.on_write_error"},
      {"[runtime]\npeer_timeout_s = 0.5", "runtime.peer_timeout_s"},
      {"[optim]\nmin_lr_ratio = 1.5", "optim.min_lr_ratio"},
      {"[optim]\ngrad_clip = -1", "optim.grad_clip"},
      {"[run]\ndir = \"\"", "run.dir"},
      {"[run]\nlog_every = 0", "run.log_every"},
      {"[runtime]\nprecision = \"fp16\"", "runtime.precision"},
      {"[runtime]\ncomm = \"gloo\"", "runtime.comm"},
      {"[runtime]\nattention = \"flash\"", "runtime.attention"},
      {"[runtime]\ncomm = \"nccl\"", "runtime.comm = \"nccl\" needs runtime.device = \"cuda\""},
      {"[runtime]\ndevice = \"gpu\"", "runtime.device"},
      {"[runtime]\nthreads = -1", "runtime.threads"},
      {"[runtime]\nthreads = 2147483647", "runtime.threads must be in [0, 4096]"},
  };
  for (const auto& [text, key] : cases) {
    SCOPED_TRACE(text);
    const Error e = error_of(text + "\n");
    EXPECT_CONTAINS(e.what(), key);
    EXPECT_CONTAINS(e.what(), "test.toml:2:");  // where the offending value was written
  }
}

// The cuda fused attention has kernels for four head sizes: another is refused at load (exit
// 2, before anything runs), with the way out; the cpu backend takes any head size, and
// runtime.attention = "auto" is fused on the cpu, unfused on cuda.
TEST(Config, FusedAttentionOnCudaNeedsASupportedHeadSize) {
  const Error e = error_of(
      "[model]\nd_model = 96\nn_head = 1\n[runtime]\ndevice = \"cuda\"\nattention = \"fused\"\n");
  EXPECT_EQ(e.code(), ExitCode::usage);
  EXPECT_CONTAINS(e.what(), "head sizes 16, 32, 64 and 128; model.d_model / model.n_head is 96");
  EXPECT_CONTAINS(e.hint(), "runtime.attention = \"unfused\"");
  EXPECT_NO_THROW(parse_config("[model]\nd_model = 96\nn_head = 1\n[runtime]\ndevice = "
                               "\"cuda\"\nattention = \"unfused\"\n",
                               "test.toml", {}));
  EXPECT_NO_THROW(parse_config("[model]\nd_model = 96\nn_head = 1\n", "test.toml", {}));
  // "auto" is unfused on cuda: any head size.
  const Config c = parse_config("[model]\nd_model = 96\nn_head = 1\n[runtime]\ndevice = \"cuda\"\n",
                                "test.toml", {});
  EXPECT_FALSE(model_that_runs(c).fused_attention);
  EXPECT_TRUE(model_that_runs(parse_config("", "test.toml", {})).fused_attention);  // cpu
}

TEST(Config, BoundaryValuesAccepted) {
  const Config c = parse_config(R"(
[model]
vocab_size = 65536
[data.synthetic]
order = 22
alphabet = 2
branching = 2
smoothing = 0.999
[train]
steps = 5
val_every = 0
[optim]
beta1 = 0
warmup_steps = 5
min_lr_ratio = 0
grad_clip = 0
weight_decay = 0
[runtime]
threads = 0
)",
                                "t");
  EXPECT_EQ(c.data.synthetic.order, 22);  // 2^22 = 4194304 contexts: the limit
  EXPECT_EQ(c.lr.warmup_steps, 5);
  EXPECT_EQ(parse_config("[model]\nvocab_size = 16\n[data.synthetic]\nalphabet = 16\nbranching = 16\n", "t")
                .data.synthetic.branching,
            16);
}

// Other trainers accept a warm-up longer than the run (the rate never finishes warming up):
// a warning, not a refusal, so a quick look at a shipped config just works.
TEST(Config, WarmupLongerThanTheRunWarns) {
  const Config c = parse_config("[train]\nsteps = 4\n[optim]\nwarmup_steps = 20\n", "t");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_CONTAINS(c.warnings[0], "optim.warmup_steps = 20 is more than train.steps = 4");
  EXPECT_CONTAINS(c.warnings[0], "never finishes warming up");
  EXPECT_TRUE(parse_config("[train]\nsteps = 20\n[optim]\nwarmup_steps = 20\n", "t")
                  .warnings.empty());
  const Config tiny = load_config((repo_root() / "configs/tiny.toml").string(), {"train.steps=4"});
  EXPECT_EQ(tiny.train.steps, 4);
  EXPECT_EQ(tiny.warnings.size(), 1u);
}

TEST(Config, CheckpointDirDefaultsUnderRunDir) {
  EXPECT_EQ(parse_config("[run]\ndir = \"r\"\n", "t").checkpoint_dir(), "r/checkpoints");
  EXPECT_EQ(parse_config("[checkpoint]\ndir = \"/c\"\n", "t").checkpoint_dir(), "/c");
}

TEST(Config, ToTomlRoundTrips) {
  // runtime.calibration is not in kEveryKey: its stages' runtime.tflops differ.
  for (const char* text : {"", kEveryKey, "[runtime]\ncalibration = \"calibration.json\"\n"}) {
    const Config c = parse_config(text, "t");
    const std::string emitted = to_toml(c);
    SCOPED_TRACE(emitted);
    expect_same(parse_config(emitted, "emitted"), c);
  }
  const Config calibrated = parse_config("[runtime]\ncalibration = \"calibration.json\"\n", "t");
  EXPECT_EQ(calibrated.runtime.calibration, "calibration.json");
  const Config tiny = load_config((repo_root() / "configs/tiny.toml").string());
  expect_same(parse_config(to_toml(tiny), "emitted"), tiny);
  // Every key is written (one "key = value" line each).
  const std::string emitted = to_toml(Config{});
  size_t lines = 0;
  for (size_t at = 0; (at = emitted.find(" = ", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 62u) << emitted;  // a gpt2 config leaves out the llama keys
  EXPECT_CONTAINS(emitted, "\n[parallel]\npipeline = 1\ndata = 1\nstage_layers = \"uniform\"\n"
                           "schedule = \"1f1b\"\n");
  EXPECT_CONTAINS(to_toml(parse_config(kEveryKey, "t")), "stage_layers = [0, 2, 1]\n");
  EXPECT_CONTAINS(emitted, "lr = 0.001\n");  // floats are written short, not 0.0010000000474975
}

TEST(Config, FloatsRoundTripExactly) {
  std::mt19937_64 rng(7);
  auto positive_float = [&] {  // any positive finite float, denormals included
    for (;;) {
      const uint32_t bits = static_cast<uint32_t>(rng()) & 0x7fffffffu;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      if (std::isfinite(f) && f > 0) return f;
    }
  };
  auto unit_float = [&] {  // [0, 1)
    for (;;)
      if (const float f = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng); f < 1.0f) return f;
  };
  for (int i = 0; i < 500; ++i) {
    Config c;
    c.model.init_std = positive_float();
    c.model.ln_eps = positive_float();
    c.adamw.lr = positive_float();
    c.adamw.eps = positive_float();
    c.adamw.weight_decay = positive_float();
    c.clip.max_norm = positive_float();
    c.adamw.beta1 = unit_float();
    c.adamw.beta2 = unit_float();
    c.lr.min_lr_ratio = unit_float();
    do {
      c.data.synthetic.smoothing = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    } while (c.data.synthetic.smoothing == 0.0);
    c.lr.total_steps = c.train.steps;
    const std::string emitted = to_toml(c);
    SCOPED_TRACE(emitted);
    expect_same(parse_config(emitted, "emitted"), c);
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace nupipe::launcher
