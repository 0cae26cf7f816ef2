// test_cli_llama.cpp: the llama family end to end under mpirun: a pipeline 2 [1, 3] x data 2
// run's checkpoint holds llama tensors under global names and the family among its keys;
// resumed on the same layout it continues bitwise, resharded onto one rank within fp32
// summation order; and a checkpoint of the other family is refused naming model.family. The
// same with Yuan 2.0's localized filtering, whose checkpoint the plain llama blocks refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

const std::map<std::string, std::string> kMpiEnv{{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                                  {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
                                                  {"OMPI_MCA_rmaps_base_oversubscribe", "1"}};

std::string llama_config() { return source_dir() + "/configs/llama-tiny.toml"; }

ProcessResult train(int np, const std::string& config, const std::vector<std::string>& sets,
                    const std::string& cwd) {
  std::vector<std::string> argv{find_in_path("mpirun"), "--oversubscribe", "-np",
                                std::to_string(np), nupipe_bin(), "train", config,
                                "--set", "runtime.threads=1", "--set", "train.steps=8",
                                "--set", "train.val_every=0", "--set", "data.val=",
                                "--set", "run.log_every=1", "--set", "checkpoint.every=4"};
  for (const auto& s : sets) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  return run_process(argv, cwd, 120.0, kMpiEnv);
}

std::map<int, double> losses(const std::string& run_dir) {
  std::map<int, double> out;
  for (const std::string& line : read_lines(run_dir + "/metrics.jsonl")) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int>()] = j["loss"].get<double>();
  }
  return out;
}

// `model` adds keys to every run (Yuan's filter); `yuan` checks its tensors and key.
void resumes_bitwise_and_reshards(const std::vector<std::string>& model, bool yuan) {
  TempDir tmp;
  auto with = [](std::vector<std::string> v, const std::string& s) { v.push_back(s); return v; };
  std::vector<std::string> pp2dp2{"parallel.pipeline=2", "parallel.data=2",
                                  "parallel.stage_layers=[1,3]"};
  std::vector<std::string> one{"parallel.pipeline=1", "parallel.data=1",
                               "parallel.stage_layers=uniform"};
  for (const std::string& m : model) {
    pp2dp2 = with(pp2dp2, m);
    one = with(one, m);
  }
  const std::string full = tmp.file("full");
  const ProcessResult a = train(4, llama_config(), with(pp2dp2, "run.dir=" + full), tmp.path());
  ASSERT_EQ(a.exit_code, 0) << a;
  const std::string ckpt = full + "/checkpoints/step_00000004";
  ASSERT_TRUE(fs::exists(ckpt)) << list_dir(full);

  // Global names and the family's keys.
  const ProcessResult inspect = run_nupipe({"ckpt", "inspect", ckpt, "--json"}, tmp.path());
  ASSERT_EQ(inspect.exit_code, 0) << inspect;
  const auto j = nlohmann::json::parse(inspect.output.substr(inspect.output.find('{')));
  EXPECT_EQ(j["model"]["family"], "llama");
  EXPECT_EQ(j["model"]["n_kv_head"], yuan ? 4 : 2);
  EXPECT_EQ(j["model"]["ffn_hidden"], 176);
  EXPECT_EQ(j["tensors"]["model/blocks.3.attn.qkv.weight"],
            (std::vector<int>{yuan ? 192 : 128, 64}));
  EXPECT_EQ(j["model"]["lfa"], yuan);
  EXPECT_EQ(j["tensors"].contains("model/blocks.3.attn.lfa.conv1.weight"), yuan);
  if (yuan)
    EXPECT_EQ(j["tensors"]["model/blocks.0.attn.lfa.conv2.weight"], (std::vector<int>{2, 64, 32}));
  EXPECT_EQ(j["tensors"]["model/blocks.0.mlp.gate_up.weight"], (std::vector<int>{352, 64}));
  EXPECT_TRUE(j["tensors"].contains("model/head.norm.weight"));
  EXPECT_FALSE(j["tensors"].contains("model/embed.wpe.weight"));

  const std::map<int, double> want = losses(full);
  ASSERT_EQ(want.size(), 8u);
  for (const auto& [name, np, sets] :
       {std::tuple<std::string, int, std::vector<std::string>>{"same", 4, pp2dp2},
        {"resharded", 1, one}}) {
    const std::string dir = tmp.file(name);
    const ProcessResult r = train(np, llama_config(),
                                  with(with(sets, "run.dir=" + dir), "checkpoint.resume=" + ckpt),
                                  tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r;
    const std::map<int, double> got = losses(dir);
    ASSERT_EQ(got.size(), 4u) << name << ": steps 5..8 expected\n" << r;
    for (const auto& [step, loss] : got) {
      if (name == "same") {
        EXPECT_EQ(loss, want.at(step)) << "step " << step << " resumed on the same layout";
      } else {
        EXPECT_NEAR(loss, want.at(step), 1e-5 * want.at(step)) << "step " << step << ", one rank";
      }
    }
  }

  // A GPT-2 config pointed at the llama checkpoint: refused (exit 4), the family named.
  const ProcessResult g = run_nupipe(
      {"train", tiny_config(), "--set", "parallel.pipeline=1", "--set", "parallel.data=1",
       "--set", "parallel.stage_layers=uniform", "--set", "run.dir=" + tmp.file("gpt2"), "--set",
       "checkpoint.resume=" + ckpt, "--set", "model.vocab_size=256"},
      tmp.path());
  EXPECT_EQ(g.exit_code, 4) << g;
  EXPECT_NE(g.output.find("model.family: checkpoint llama, config gpt2"), std::string::npos) << g;
  if (!yuan) return;
  // The same llama blocks without the filter: refused, model.lfa named.
  const ProcessResult l = train(1, llama_config(),
                                {"parallel.pipeline=1", "parallel.data=1",
                                 "parallel.stage_layers=uniform", "model.n_kv_head=4",
                                 "run.dir=" + tmp.file("plain"), "checkpoint.resume=" + ckpt},
                                tmp.path());
  EXPECT_EQ(l.exit_code, 4) << l;
  EXPECT_NE(l.output.find("model.lfa"), std::string::npos) << l;
}

TEST(CliLlama, CheckpointResumesBitwiseAndReshards) { resumes_bitwise_and_reshards({}, false); }

// Yuan 2.0's localized filtering (model.lfa, multi-head): the same cycle.
TEST(CliLlama, YuanCheckpointResumesBitwiseAndReshards) {
  resumes_bitwise_and_reshards({"model.lfa=true", "model.n_kv_head=0"}, true);
}

}  // namespace
}  // namespace nupipe::cli_test
