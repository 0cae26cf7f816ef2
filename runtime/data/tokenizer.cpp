// tokenizer.cpp: the byte tokenizer, and the GPT-2 tokenizer as a bridge to js-tiktoken in a
// node child process (scripts/tokenizer/gpt2_tokenize.mjs: its protocol is described there).
#include "runtime/data/tokenizer.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "runtime/data/subprocess.h"
#include "runtime/error.h"

#ifndef NUPIPE_TOKENIZER_DIR
#define NUPIPE_TOKENIZER_DIR "scripts/tokenizer"
#endif

namespace nupipe::runtime {

namespace {

const char* const kSetupHint =
    "run scripts/setup.sh (it installs Node.js from Debian and the js-tiktoken version pinned "
    "in scripts/tokenizer/package-lock.json), or use --tokenizer byte";

class ByteTokenizer final : public Tokenizer {
 public:
  TokenizerKind kind() const override { return TokenizerKind::byte; }
  std::string library() const override { return "nupipe"; }
  bool needs_utf8() const override { return false; }
  void send(std::string_view text) override { text_ = text; }
  void receive(std::vector<uint16_t>& out) override {
    out.reserve(out.size() + text_.size());
    for (char c : text_) out.push_back(static_cast<unsigned char>(c));
    text_ = {};
  }
  std::string decode(const std::vector<int32_t>& ids) override {
    std::string s;
    s.reserve(ids.size());
    for (int32_t t : ids) {
      if (t < 0 || t >= 256) {
        throw usage_error("token id " + std::to_string(t) + " is not a byte (0..255)",
                          "decode with the tokenizer the model was trained with");
      }
      s.push_back(static_cast<char>(t));
    }
    return s;
  }
  size_t safe_cut(std::string_view text) const override { return text.size(); }

 private:
  std::string_view text_;  // sent, not yet received (the caller keeps it alive)
};

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get_u32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

class Gpt2Tokenizer final : public Tokenizer {
 public:
  Gpt2Tokenizer() {
    const std::string dir = tokenizer_dir();
    script_ = dir + "/gpt2_tokenize.mjs";
    struct stat st {};
    if (::stat(script_.c_str(), &st) != 0) {
      throw usage_error("the GPT-2 tokenizer script " + script_ + " does not exist",
                        "set NUPIPE_TOKENIZER_DIR to the scripts/tokenizer directory of the "
                        "nupipe source tree");
    }
    child_ = std::make_unique<Subprocess>(std::vector<std::string>{"node", script_},
                                          "node (it runs the GPT-2 tokenizer, js-tiktoken)",
                                          kSetupHint);
    // The handshake: the child loaded js-tiktoken and says which version it has.
    const std::string info = read_frame("starting");
    try {
      const nlohmann::json j = nlohmann::json::parse(info);
      library_ = j.at("library").get<std::string>() + " " + j.at("version").get<std::string>();
      if (j.at("vocab_size").get<int>() != kGpt2Vocab) {
        throw usage_error(script_ + " reports a gpt2 vocabulary of " +
                              std::to_string(j.at("vocab_size").get<int>()) + ", expected " +
                              std::to_string(kGpt2Vocab),
                          kSetupHint);
      }
    } catch (const nlohmann::json::exception& e) {
      throw usage_error(script_ + " answered with a malformed handshake: " + e.what(),
                        kSetupHint);
    }
  }

  TokenizerKind kind() const override { return TokenizerKind::gpt2; }
  std::string library() const override { return library_; }
  bool needs_utf8() const override { return true; }

  void send(std::string_view text) override {
    request('E', text.data(), text.size(), "encoding");
  }

  void receive(std::vector<uint16_t>& out) override {
    unsigned char head[4];
    if (!child_->read(head, 4)) fail("encoding");
    const uint32_t n = get_u32(head);
    const size_t at = out.size();
    out.resize(at + n);
    if (n > 0 && !child_->read(out.data() + at, size_t{n} * 2)) fail("encoding");
  }

  std::string decode(const std::vector<int32_t>& ids) override {
    std::vector<uint16_t> body;
    body.reserve(ids.size());
    for (int32_t t : ids) {
      if (t < 0 || t >= kGpt2Vocab) {
        throw usage_error("token id " + std::to_string(t) + " is outside GPT-2's vocabulary "
                              "(0.." + std::to_string(kGpt2Vocab - 1) + ")",
                          "decode with the tokenizer the model was trained with");
      }
      body.push_back(static_cast<uint16_t>(t));
    }
    request('D', body.data(), body.size() * 2, "decoding");
    return read_frame("decoding");
  }

  size_t safe_cut(std::string_view text) const override { return gpt2_safe_cut(text); }

 private:
  void request(char op, const void* data, size_t bytes, const char* doing) {
    if (bytes > 0xffffffffu) {
      throw usage_error(std::string(doing) + " " + std::to_string(bytes) +
                        " bytes at once: more than the tokenizer's 4 GiB frame");
    }
    std::string head(1, op);
    put_u32(head, static_cast<uint32_t>(bytes));
    if (!child_->write(head.data(), head.size()) ||
        (bytes > 0 && !child_->write(data, bytes))) {
      fail(doing);
    }
  }

  std::string read_frame(const char* doing) {
    unsigned char head[4];
    if (!child_->read(head, 4)) fail(doing);
    std::string s(get_u32(head), '\0');
    if (!s.empty() && !child_->read(s.data(), s.size())) fail(doing);
    return s;
  }

  // The child stopped answering: say why, from its exit status and its stderr.
  [[noreturn]] void fail(const char* doing) {
    const int status = child_->finish();
    std::string err = child_->stderr_text();
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
    if (status == 10) {
      throw usage_error("the GPT-2 tokenizer needs the npm package js-tiktoken: " + err,
                        kSetupHint);
    }
    throw usage_error("the GPT-2 tokenizer (node " + script_ + ") stopped while " + doing +
                          " (exit status " + std::to_string(status) + ")" +
                          (err.empty() ? std::string() : ": " + err),
                      "check that `node --version` works (Node.js 18 or newer) and " +
                          std::string(kSetupHint));
  }

  std::string script_;
  std::string library_;
  std::unique_ptr<Subprocess> child_;
};

}  // namespace

TokenizerKind parse_tokenizer(std::string_view name) {
  if (name == "byte") return TokenizerKind::byte;
  if (name == "gpt2") return TokenizerKind::gpt2;
  throw usage_error("unknown tokenizer \"" + std::string(name) + "\"",
                    "use byte (each byte one token, vocab 256) or gpt2 (GPT-2's BPE, vocab "
                    "50257)");
}

const char* tokenizer_name(TokenizerKind kind) {
  return kind == TokenizerKind::gpt2 ? "gpt2" : "byte";
}

int tokenizer_vocab(TokenizerKind kind) {
  return kind == TokenizerKind::gpt2 ? kGpt2Vocab : 256;
}

std::string tokenizer_dir() {
  const char* env = std::getenv("NUPIPE_TOKENIZER_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(NUPIPE_TOKENIZER_DIR);
}

std::unique_ptr<Tokenizer> Tokenizer::open(TokenizerKind kind) {
  if (kind == TokenizerKind::gpt2) return std::make_unique<Gpt2Tokenizer>();
  return std::make_unique<ByteTokenizer>();
}

size_t gpt2_safe_cut(std::string_view text) {
  auto visible = [](unsigned char c) { return c >= 0x21 && c <= 0x7e; };
  auto space = [](unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  for (size_t n = text.size(); n-- > 1;) {
    if (space(static_cast<unsigned char>(text[n])) &&
        visible(static_cast<unsigned char>(text[n - 1]))) {
      return n;
    }
  }
  return 0;
}

int64_t first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    else return static_cast<int64_t>(i);
    if (i + len > n) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return static_cast<int64_t>(i);
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

}  // namespace nupipe::runtime
