// tokenizer.h: the tokenizers token files are made with: "byte" (each byte one token, vocab
// 256) and "gpt2" (GPT-2's BPE, vocab 50257, by js-tiktoken in a node child process).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nupipe::runtime {

enum class TokenizerKind { byte, gpt2 };

inline constexpr int kGpt2Vocab = 50257;
inline constexpr int32_t kGpt2EndOfText = 50256;  // "<|endoftext|>"

// "byte" / "gpt2"; anything else throws nupipe::Error (usage) listing the names.
TokenizerKind parse_tokenizer(std::string_view name);
const char* tokenizer_name(TokenizerKind kind);
int tokenizer_vocab(TokenizerKind kind);

// Where scripts/tokenizer (gpt2_tokenize.mjs and its node_modules) is: $NUPIPE_TOKENIZER_DIR,
// else the source tree this binary was built from.
std::string tokenizer_dir();

class Tokenizer {
 public:
  // The gpt2 tokenizer starts node on scripts/tokenizer/gpt2_tokenize.mjs; without node or
  // js-tiktoken it throws nupipe::Error (usage) with the fix (run scripts/setup.sh).
  static std::unique_ptr<Tokenizer> open(TokenizerKind kind);
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;
  // What does the encoding: "nupipe" (byte), "js-tiktoken 1.0.21" (gpt2).
  virtual std::string library() const = 0;
  // Whether text must be valid UTF-8 (gpt2 reads it as Unicode text).
  virtual bool needs_utf8() const = 0;
  // Appends the tokens of `text`, encoded as one whole, to `out`. For gpt2, "<|endoftext|>"
  // is the special token 50256.
  void encode(std::string_view text, std::vector<uint16_t>& out) {
    send(text);
    receive(out);
  }
  // The same in two halves, so that several tokenizers (processes) can work at once: send
  // hands the text over (gpt2: to the child process, which starts on it), receive appends its
  // tokens. One text in flight per tokenizer: each send is followed by its receive.
  virtual void send(std::string_view text) = 0;
  virtual void receive(std::vector<uint16_t>& out) = 0;
  // The text of `ids` (gpt2: invalid UTF-8 at a cut through a character becomes U+FFFD).
  virtual std::string decode(const std::vector<int32_t>& ids) = 0;
  // The largest n <= text.size() such that encoding text[0, n) and text[n, ...) separately
  // gives exactly the tokens of encoding text whole, whatever follows text; 0 when text
  // holds no such place.
  virtual size_t safe_cut(std::string_view text) const = 0;
};

// For gpt2: the largest n with text[n - 1] a visible ASCII character ('!'..'~') and text[n]
// ASCII whitespace. GPT-2's pre-tokenizer never joins a non-space character with the space
// after it, and a piece that starts at a space depends on nothing before it; a cut after a
// space could instead split a whitespace run that `\s+(?!\S)` matches differently at the
// end of a chunk than before a letter ("  \n" + "x" versus "  \nx").
size_t gpt2_safe_cut(std::string_view text);

// Byte offset of the first byte of `text` that is not valid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid), or -1. A sequence cut off by the end of text
// is invalid too.
int64_t first_invalid_utf8(std::string_view text);

}  // namespace nupipe::runtime
