// token_meta.cpp: the token file's JSON sidecar, written with write_file_atomic and read with
// nlohmann-json.
#include "runtime/data/token_meta.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::runtime {

std::string token_meta_path(const std::string& token_file) { return token_file + ".json"; }

void write_token_meta(const std::string& token_file, const TokenFileMeta& m) {
  const nlohmann::json j = {{"format", "nupipe-token-file-meta"},
                            {"tokenizer", m.tokenizer},
                            {"vocab_size", m.vocab_size},
                            {"library", m.library},
                            {"source", m.source},
                            {"source_bytes", m.source_bytes},
                            {"tokens", m.tokens},
                            {"split", m.split},
                            {"val_fraction", m.val_fraction}};
  const std::string path = token_meta_path(token_file);
  std::string step;
  const int err = write_file_atomic(path, j.dump(2) + "\n", &step);
  if (err != 0) {
    throw data_error("cannot write " + path + ": " + step + " failed: " + errno_text(err),
                     "check that the directory is writable and has free space");
  }
}

std::optional<TokenFileMeta> read_token_meta(const std::string& token_file) {
  const std::string path = token_meta_path(token_file);
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  try {
    const nlohmann::json j = nlohmann::json::parse(text.str());
    TokenFileMeta m;
    m.tokenizer = j.at("tokenizer").get<std::string>();
    m.vocab_size = j.at("vocab_size").get<int>();
    m.library = j.value("library", std::string());
    m.source = j.value("source", std::string());
    m.source_bytes = j.value("source_bytes", int64_t{0});
    m.tokens = j.value("tokens", int64_t{0});
    m.split = j.value("split", std::string());
    m.val_fraction = j.value("val_fraction", 0.0);
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw data_error(path + " (what made " + token_file + ") is not readable: " + e.what(),
                     "regenerate both with `nupipe data prepare`, or delete " + path);
  }
}

}  // namespace nupipe::runtime
