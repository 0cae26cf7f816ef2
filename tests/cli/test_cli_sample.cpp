// test_cli_sample.cpp: `nupipe sample` from checkpoints trained here (the synthetic Markov
// chain: samples follow its transitions; GPT-2 tokens from `data prepare --tokenizer gpt2`:
// the prompt comes back as text), determinism, and the refusals with their exit codes.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/data/markov_corpus.h"
#include "runtime/data/tokenizer.h"
#include "tests/cli/cli_process.h"

namespace nupipe::cli_test {
namespace {

// The line of --ids output (only digits and spaces).
std::vector<int32_t> ids_line(const std::string& output) {
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.find_first_not_of("0123456789 ") != std::string::npos) continue;
    std::vector<int32_t> ids;
    std::istringstream words(line);
    for (int32_t v; words >> v;) ids.push_back(v);
    return ids;
  }
  return {};
}

// One small model trained on the synthetic corpus for all the tests of this suite.
class CliSample : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const ProcessResult t = run_train(
        tiny_config(),
        {"model.n_layer=1", "train.steps=60", "train.val_every=0", "optim.warmup_steps=5",
         "runtime.threads=1", "run.dir=" + dir_->file("run")},
        dir_->path(), 120.0);
    ASSERT_EQ(t.exit_code, 0) << t;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string run() { return dir_->file("run"); }
  static TempDir* dir_;
};
TempDir* CliSample::dir_ = nullptr;

TEST_F(CliSample, FollowsTheMarkovChainAndIsDeterministic) {
  // Prompt "0" is token 48, inside the chain's 64 symbols.
  const std::vector<std::string> greedy = {"sample", run(), "--prompt", "0", "--tokens", "120",
                                           "--temperature", "0", "--ids"};
  const ProcessResult a = run_nupipe(greedy, dir_->path());
  ASSERT_EQ(a.exit_code, 0) << a;
  EXPECT_NE(a.output.find("greedy"), std::string::npos) << a;
  const std::vector<int32_t> ga = ids_line(a.output);
  ASSERT_EQ(ga.size(), 121u) << a;
  EXPECT_EQ(ga[0], 48);
  EXPECT_EQ(ids_line(run_nupipe(greedy, dir_->path()).output), ga) << "greedy is not repeatable";

  std::vector<std::string> warm = {"sample", run(), "--prompt", "0", "--tokens", "300",
                                   "--temperature", "0.8", "--top-k", "8", "--seed", "7",
                                   "--ids"};
  const ProcessResult s1 = run_nupipe(warm, dir_->path());
  ASSERT_EQ(s1.exit_code, 0) << s1;
  const std::vector<int32_t> w1 = ids_line(s1.output);
  ASSERT_EQ(w1.size(), 301u) << s1;
  EXPECT_EQ(ids_line(run_nupipe(warm, dir_->path()).output), w1) << "a seed is not repeatable";
  warm[11] = "8";
  const std::vector<int32_t> w2 = ids_line(run_nupipe(warm, dir_->path()).output);
  ASSERT_EQ(w2.size(), 301u);
  EXPECT_NE(w2, w1) << "seeds 7 and 8 gave the same 300 tokens";

  // The chain's own log-loss of what was sampled: its entropy rate is 1.28 nats/token; a
  // successor outside the context's 4 costs about -ln(0.02 / 64) = 8.0 nats, a token outside
  // the 64-symbol alphabet is impossible (and an untrained model of 256 tokens picks those
  // three times in four). A model that learned the chain picks its likely successors.
  runtime::SyntheticOptions so;  // tiny.toml's [data.synthetic] are the defaults
  so.alphabet = 64;
  so.branching = 4;
  const runtime::MarkovCorpus chain(so);
  for (const auto* ids : {&ga, &w1, &w2}) {
    for (int32_t t : *ids) ASSERT_LT(t, 64) << "a token outside the chain's alphabet";
    std::vector<uint16_t> seq(ids->begin(), ids->end());
    const double nats = chain.log_loss(seq.data(), static_cast<int64_t>(seq.size()));
    std::printf("chain log-loss of the %s samples: %.3f nats/token\n",
                ids == &ga ? "greedy" : "top-k 8", nats);
    EXPECT_LT(nats, ids == &ga ? 1.5 : 2.2) << "the samples do not follow the chain";
  }
}

TEST_F(CliSample, LongPromptSlidesAndTextIsPrinted) {
  // 100 prompt tokens > seq_len 64: a note, the whole prompt printed, then the new tokens.
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt.push_back(static_cast<char>('0' + i % 10));
  const ProcessResult r = run_nupipe(
      {"sample", run(), "--prompt", prompt, "--tokens", "5", "--temperature", "0"}, dir_->path());
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.output.find("more than seq_len 64; the model sees its last 64"), std::string::npos)
      << r;
  EXPECT_NE(r.output.find(prompt), std::string::npos) << r;
}

TEST_F(CliSample, Refusals) {
  // Missing: exit 4, naming it.
  ProcessResult r = run_nupipe({"sample", dir_->file("nope"), "--prompt", "0"}, dir_->path());
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r;
  // Damaged: a byte of state.h5 changed in a copy; exit 4, naming the damage.
  const std::string src = run() + "/checkpoints/step_00000060", bad = dir_->file("bad/step_00000060");
  fs::create_directories(dir_->file("bad"));
  fs::copy(src, bad, fs::copy_options::recursive);
  {
    std::fstream f(bad + "/state.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(bad + "/state.h5") / 2));
    f.put('\x5a');
  }
  r = run_nupipe({"sample", bad, "--prompt", "0"}, dir_->path());
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_NE(r.output.find("damaged"), std::string::npos) << r;
  // Bad arguments: exit 2.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"sample", run(), "--temperature", "-1"},
        {"sample", run(), "--tokens", "-3"},
        {"sample", run(), "--top-k", "x"},
        {"sample", run(), "--tokenizer", "bpe"},
        {"sample", run()},  // byte level needs a prompt
        {"sample", run(), "--prompt", "0", "--tokenizer", "gpt2"},  // vocab 256 < 50257
        {"sample"}}) {
    r = run_nupipe(args, dir_->path());
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r;
  }
  r = run_nupipe({"sample", "--help"}, dir_->path());
  EXPECT_EQ(r.exit_code, 0) << r;
  for (const char* opt : {"--prompt", "--tokens", "--temperature", "--top-k", "--seed",
                          "--tokenizer", "--config"}) {
    EXPECT_NE(r.output.find(opt), std::string::npos) << opt << "\n" << r;
  }
}

// GPT-2 end to end: text -> data prepare --tokenizer gpt2 (with a val split) -> train a few
// steps -> sample, which finds the tokenizer in train.bin.json and prints the prompt as text.
TEST(CliSampleGpt2, PrepareTrainSample) {
  TempDir tmp;
  std::string text;
  for (int i = 0; i < 400; ++i) {
    text += "The cat sat on the mat. It's 12:30 and caf\u00e9s are open \U0001F600.\n";
  }
  write_file(tmp.file("t.txt"), text);
  const ProcessResult p = run_nupipe(
      {"data", "prepare", "--tokenizer", "gpt2", "--text", tmp.file("t.txt"), "--out",
       tmp.file("train.bin"), "--val-fraction", "0.1", "--val-out", tmp.file("val.bin")},
      tmp.path());
  ASSERT_EQ(p.exit_code, 0) << p;
  EXPECT_NE(p.output.find("GPT-2 BPE, vocab 50257"), std::string::npos) << p;
  EXPECT_NE(p.output.find("js-tiktoken"), std::string::npos) << p;
  EXPECT_NE(p.output.find("(validation)"), std::string::npos) << p;
  const std::string run_dir = tmp.file("run");
  const ProcessResult t = run_train(
      tiny_config(),
      {"data.train=" + tmp.file("train.bin"), "data.val=" + tmp.file("val.bin"),
       "model.vocab_size=50257", "model.n_layer=1", "model.d_model=32", "model.seq_len=32",
       "train.steps=4", "train.global_batch=4", "train.val_every=0", "train.val_batches=1",
       "optim.warmup_steps=1", "runtime.threads=1", "run.dir=" + run_dir},
      tmp.path(), 120.0);
  ASSERT_EQ(t.exit_code, 0) << t;

  const std::string prompt = "The caf\u00e9";
  const ProcessResult s = run_nupipe(
      {"sample", run_dir, "--prompt", prompt, "--tokens", "8", "--temperature", "0.9",
       "--top-k", "40", "--seed", "1"},
      tmp.path());
  ASSERT_EQ(s.exit_code, 0) << s;
  EXPECT_NE(s.output.find("tokenizer gpt2 (by " + tmp.file("train.bin") + ".json)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.output.find("\n" + prompt), std::string::npos) << "the prompt as text\n" << s;
  // --ids: the prompt's GPT-2 ids, then 8 more; their decoding is the text printed above.
  const ProcessResult ids = run_nupipe(
      {"sample", run_dir, "--prompt", prompt, "--tokens", "8", "--temperature", "0.9",
       "--top-k", "40", "--seed", "1", "--ids"},
      tmp.path());
  ASSERT_EQ(ids.exit_code, 0) << ids;
  const std::vector<int32_t> got = ids_line(ids.output);
  auto tok = runtime::Tokenizer::open(runtime::TokenizerKind::gpt2);
  std::vector<uint16_t> want;
  tok->encode(prompt, want);
  ASSERT_EQ(want.size(), 2u);  // "The" 464, " caf\u00e9" 40304
  ASSERT_EQ(got.size(), want.size() + 8) << ids;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
  EXPECT_NE(s.output.find(tok->decode(got)), std::string::npos) << s;
}

}  // namespace
}  // namespace nupipe::cli_test
