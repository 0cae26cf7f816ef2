// test_cli_bytes.cpp: bytes that are not UTF-8 (in a --set value, in a config file's name) are
// never echoed raw: the value is refused with exit 2 and its bytes shown as \xNN, nothing is
// created, and a file name of other bytes is named the same way.
#include <gtest/gtest.h>

#include <string>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

bool has_raw_byte(const std::string& text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

TEST(CliBytes, ANonUtf8SetValueIsRefusedAndShownEscaped) {
  TempDir tmp;
  const std::string run = tmp.file("r\xffx");
  const ProcessResult r = run_train(tiny_config(), {"run.dir=" + run, "train.steps=2"},
                                    tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("not UTF-8 text (at byte "), std::string::npos) << r;
  EXPECT_NE(r.output.find("r\\xffx"), std::string::npos) << r;
  EXPECT_FALSE(has_raw_byte(r.output)) << r;
  EXPECT_FALSE(fs::exists(run));
}

TEST(CliBytes, AConfigFileNameOfOtherBytesIsNamedEscaped) {
  TempDir tmp;
  const ProcessResult r = run_nupipe({"train", tmp.file("bad\xfe.toml")}, tmp.path());
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.output.find("bad\\xfe.toml"), std::string::npos) << r;
  EXPECT_FALSE(has_raw_byte(r.output)) << r;
}

}  // namespace
}  // namespace nupipe::cli_test
