// test_config_family.cpp: model.family and its keys: gpt2 the default, llama's keys parsed and
// range-checked, each family's own keys refused for the other with the reason (exit 2), the
// to_toml round trip of a llama config, and the one list of keys a checkpoint must match.
#include <gtest/gtest.h>

#include <string>

#include "checkpoint/checkpoint_info.h"
#include "launcher/config.h"
#include "runtime/error.h"

namespace nupipe::launcher {
namespace {

std::string refusal(const std::string& text) {
  try {
    parse_config(text, "test.toml");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return {};
}

const char* kLlama = R"(
[model]
family = "llama"
d_model = 64
n_head = 8
n_kv_head = 2
ffn_hidden = 96
rope_theta = 500000.0
norm_eps = 1e-6
)";

TEST(ConfigFamily, Gpt2IsTheDefaultAndLlamaKeysParse) {
  const Config d = parse_config("", "empty");
  EXPECT_EQ(d.model.family, "gpt2");
  EXPECT_FALSE(d.model.llama());
  EXPECT_EQ(d.model.kv_heads(), d.model.n_head);
  EXPECT_EQ(d.model.ffn_width(), 4 * d.model.d_model);
  const Config c = parse_config(kLlama, "llama");
  EXPECT_TRUE(c.model.llama());
  EXPECT_EQ(c.model.kv_heads(), 2);
  EXPECT_EQ(c.model.ffn_width(), 96);
  EXPECT_EQ(c.model.rope_theta, 500000.0f);
  EXPECT_EQ(c.model.norm_eps, 1e-6f);
  EXPECT_EQ(c.model.qkv_width(), (8 + 2 * 2) * 8);
  const Config plain = parse_config("[model]\nfamily = \"llama\"\n", "t");
  EXPECT_EQ(plain.model.kv_heads(), plain.model.n_head);  // 0: multi-head
  EXPECT_EQ(plain.model.ffn_width(), 256);                // 8/3 * 64 up to a multiple of 256
}

TEST(ConfigFamily, KeysOfAnotherFamilyAreRefusedWithTheReason) {
  for (const char* key : {"n_kv_head = 2", "ffn_hidden = 100", "rope_theta = 1e4",
                          "norm_eps = 1e-6"}) {
    const std::string what = refusal(std::string("[model]\n") + key + "\n");
    EXPECT_NE(what.find("does not apply to model.family = \"gpt2\""), std::string::npos) << what;
    EXPECT_NE(what.find("llama key"), std::string::npos) << what;
  }
  const std::string what = refusal("[model]\nfamily = \"llama\"\nln_eps = 1e-5\n");
  EXPECT_NE(what.find("model.ln_eps"), std::string::npos) << what;
  EXPECT_NE(what.find("model.norm_eps"), std::string::npos) << what;
  // --set is a given key too
  try {
    parse_config("", "t", {"model.n_kv_head=1"});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    EXPECT_NE(std::string(e.what()).find("model.n_kv_head"), std::string::npos) << e.what();
  }
}

TEST(ConfigFamily, LlamaRangesNamed) {
  EXPECT_NE(refusal("[model]\nfamily = \"mamba\"\n").find("model.family"), std::string::npos);
  const std::string base = "[model]\nfamily = \"llama\"\nd_model = 64\nn_head = 8\n";
  EXPECT_NE(refusal(base + "n_kv_head = 3\n").find("does not divide model.n_head"),
            std::string::npos);
  EXPECT_NE(refusal(base + "n_kv_head = -1\n").find("model.n_kv_head"), std::string::npos);
  EXPECT_NE(refusal(base + "ffn_hidden = -4\n").find("model.ffn_hidden"), std::string::npos);
  EXPECT_NE(refusal(base + "rope_theta = 0.0\n").find("model.rope_theta"), std::string::npos);
  EXPECT_NE(refusal(base + "norm_eps = 0.0\n").find("model.norm_eps"), std::string::npos);
  EXPECT_NE(refusal("[model]\nfamily = \"llama\"\nd_model = 24\nn_head = 8\n").find("odd"),
            std::string::npos);  // head size 3: rotary needs pairs
}

// Yuan's localized filtering: a llama key, multi-head only; a checkpoint must match it.
TEST(ConfigFamily, LfaIsAMultiHeadLlamaKey) {
  const std::string gpt2 = refusal("[model]\nlfa = true\n");
  EXPECT_NE(gpt2.find("does not apply to model.family = \"gpt2\""), std::string::npos) << gpt2;
  const std::string base = "[model]\nfamily = \"llama\"\nlfa = true\nd_model = 64\nn_head = 8\n";
  const Config ok = parse_config(base, "yuan");
  EXPECT_TRUE(ok.model.lfa);
  EXPECT_FALSE(parse_config("[model]\nfamily = \"llama\"\n", "t").model.lfa);
  const std::string gqa = refusal(base + "n_kv_head = 2\n");
  EXPECT_NE(gqa.find("multi-head"), std::string::npos) << gqa;
  runtime::ModelConfig plain = parse_config("[model]\nfamily = \"llama\"\n", "t").model;
  const auto d = checkpoint::model_differences(ok.model, plain);
  ASSERT_FALSE(d.empty());
  bool named = false;
  for (const auto& x : d) named |= x.key == "model.lfa";
  EXPECT_TRUE(named) << "a checkpoint with the filter does not resume without it";
  EXPECT_EQ(key_values(parse_config(to_toml(ok), "emitted")), key_values(ok));
}

TEST(ConfigFamily, LlamaRoundTripsThroughToToml) {
  const Config c = parse_config(kLlama, "llama");
  const std::string emitted = to_toml(c);
  EXPECT_EQ(emitted.find("ln_eps"), std::string::npos) << emitted;  // not a llama key
  const Config back = parse_config(emitted, "emitted");
  EXPECT_EQ(to_toml(back), emitted);
  EXPECT_EQ(key_values(back), key_values(c));
  EXPECT_EQ(to_toml(Config{}).find("n_kv_head"), std::string::npos);
}

TEST(ConfigFamily, CheckpointKeysComeFromOneList) {
  runtime::ModelConfig a = parse_config(kLlama, "llama").model, b = a;
  EXPECT_TRUE(checkpoint::model_differences(a, b).empty());
  b.n_kv_head = 4;
  b.ffn_hidden = 0;  // 8/3 * 64 -> 256
  b.family = "gpt2";
  const auto d = checkpoint::model_differences(a, b);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].key, "model.family");
  EXPECT_EQ(d[1].key, "model.n_kv_head");
  EXPECT_EQ(d[1].saved, "2");
  EXPECT_EQ(d[1].wanted, "8");  // gpt2: one key/value head per query head
  EXPECT_EQ(d[2].key, "model.ffn_hidden");
  // Spelling out the defaults is the same model.
  runtime::ModelConfig implicit = parse_config("[model]\nfamily = \"llama\"\n", "t").model;
  runtime::ModelConfig spelled = implicit;
  spelled.n_kv_head = implicit.n_head;
  spelled.ffn_hidden = implicit.ffn_width();
  EXPECT_TRUE(checkpoint::model_differences(implicit, spelled).empty());
  for (const runtime::ModelKey& k : runtime::model_keys()) {  // every key is read back as written
    runtime::ModelConfig m;
    m.family = a.family;
    k.set(m, k.get(a));
    EXPECT_EQ(k.get(m), k.get(a)) << k.name;
  }
}

}  // namespace
}  // namespace nupipe::launcher
