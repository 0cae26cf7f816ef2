// config_checks.h: range and consistency validation of a parsed Config (internal to
// launcher/config.cpp): every refusal names the key and where it was set.
#pragma once

#include <charconv>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "launcher/config.h"
#include "runtime/error.h"

namespace nupipe::launcher {

// Where each key's value came from: "file:line:col" or "--set key=value".
using Origins = std::map<std::string, std::string, std::less<>>;

// `s` as a TOML basic string, quotes and escapes included.
inline std::string quote(std::string_view s) {  // a TOML basic string
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (ch < 0x20 || ch == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out + "\"";
}

class Checker {
 public:
  Checker(std::string_view source, const Origins& origins) : source_(source), origins_(origins) {}

  // "<where key was set>: <what>"
  [[noreturn]] void fail(std::string_view key, const std::string& what, std::string hint) const {
    const auto it = origins_.find(key);
    throw usage_error((it != origins_.end() ? it->second : source_) + ": " + what, std::move(hint));
  }
  // The first of `keys` that the file or a --set gave, else the first one.
  std::string_view first_set(std::initializer_list<std::string_view> keys) const {
    for (std::string_view k : keys)
      if (origins_.count(k)) return k;
    return *keys.begin();
  }
  template <typename T>
  void at_least(std::string_view key, T v, T lo) const {
    if (v < lo)
      fail(key, std::string(key) + " must be >= " + str(lo) + ", got " + str(v),
           "set " + std::string(key) + " to at least " + str(lo));
  }
  template <typename T>
  void positive(std::string_view key, T v) const {
    if (!(v > 0))
      fail(key, std::string(key) + " must be > 0, got " + str(v),
           "set " + std::string(key) + " to a positive value");
  }
  // lo <= v <= hi, or lo <= v < hi when !hi_inclusive
  template <typename T>
  void within(std::string_view key, T v, T lo, T hi, bool hi_inclusive, std::string hint = {}) const {
    if (v < lo || v > hi || (!hi_inclusive && v == hi))
      fail(key, std::string(key) + " must be in [" + str(lo) + ", " + str(hi) +
                    (hi_inclusive ? "]" : ")") + ", got " + str(v),
           hint.empty() ? "set " + std::string(key) + " within that range" : std::move(hint));
  }

  // v is one of `choices`; the refusal lists them, then the hint.
  void one_of(std::string_view key, const std::string& v,
              std::initializer_list<std::string_view> choices, std::string hint) const {
    std::string names;
    for (std::string_view c : choices) {
      if (v == c) return;
      names += (names.empty() ? "" : " or ") + quote(c);
    }
    fail(key, std::string(key) + " must be " + names + ", got " + quote(v), std::move(hint));
  }

  template <typename T>
  static std::string str(T v) {  // shortest round-trip text; 1 rather than 1.0 in messages
    char buf[64];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }

 private:
  std::string source_;
  const Origins& origins_;
};

// Throws nupipe::Error (usage) for the first value out of range or inconsistent. Returns
// the warnings for settings that are unusual but accepted (other trainers accept them too).
std::vector<std::string> validate(const Config& c, const Checker& ck);

// Why `key` does not apply to model.family = `family` ("model.n_kv_head: grouped-query
// attention is a llama key; GPT-2 has one key/value head per query head"), or nullptr when it
// does. Refused when given (exit 2); to_toml leaves such keys out.
const char* family_refuses(std::string_view key, std::string_view family);

}  // namespace nupipe::launcher
