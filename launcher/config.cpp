// config.cpp: the run configuration from TOML: one schema of every key, the unknown-key and
// type checks, `--set` overrides, range validation with the key named, and to_toml.
#include "launcher/config.h"
#include "launcher/config_checks.h"
#include "launcher/config_devices.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

#include "parallel/pipeline/stage_layout.h"
#include "runtime/cpu/onednn_gemm.h"
#include "runtime/error.h"
#include "runtime/printable.h"

namespace nupipe::launcher {
namespace {

// ---- schema: every key, its type, and where it lives in Config --------------------------

using IntRef = int& (*)(Config&);
using I64Ref = int64_t& (*)(Config&);
using U64Ref = uint64_t& (*)(Config&);
using FloatRef = float& (*)(Config&);
using DoubleRef = double& (*)(Config&);
using BoolRef = bool& (*)(Config&);
using StrRef = std::string& (*)(Config&);
using LayersRef = parallel::StageLayersSpec& (*)(Config&);  // "uniform", "auto" or [ints]
using RecomputeRef = parallel::RecomputeSpec& (*)(Config&);  // "none", "full" or [ints]
using NumbersRef = std::vector<double>& (*)(Config&);  // a number, or an array of numbers
using Field = std::variant<IntRef, I64Ref, U64Ref, FloatRef, DoubleRef, BoolRef, StrRef, LayersRef,
                           RecomputeRef, NumbersRef>;

struct Key {
  std::string_view path;  // full dotted name, e.g. "data.synthetic.order"
  Field field;
};

// Tables, in the order to_toml writes them.
constexpr std::string_view kSections[] = {"model", "data",  "data.synthetic", "parallel",
                                          "train", "optim", "checkpoint",     "run",
                                          "runtime"};

#define NUPIPE_KEY(path, member) Key{path, +[](Config& c) -> auto& { return c.member; }}
const std::vector<Key>& schema() {
  static const std::vector<Key> keys = {
      NUPIPE_KEY("model.family", model.family),
      NUPIPE_KEY("model.n_layer", model.n_layer),
      NUPIPE_KEY("model.d_model", model.d_model),
      NUPIPE_KEY("model.n_head", model.n_head),
      NUPIPE_KEY("model.vocab_size", model.vocab_size),
      NUPIPE_KEY("model.seq_len", model.seq_len),
      NUPIPE_KEY("model.tie_embeddings", model.tie_embeddings),
      NUPIPE_KEY("model.init_std", model.init_std),
      NUPIPE_KEY("model.ln_eps", model.ln_eps),
      NUPIPE_KEY("model.n_kv_head", model.n_kv_head),
      NUPIPE_KEY("model.ffn_hidden", model.ffn_hidden),
      NUPIPE_KEY("model.rope_theta", model.rope_theta),
      NUPIPE_KEY("model.norm_eps", model.norm_eps),
      NUPIPE_KEY("model.lfa", model.lfa),
      NUPIPE_KEY("parallel.pipeline", parallel.pipeline),
      NUPIPE_KEY("parallel.data", parallel.data),
      NUPIPE_KEY("parallel.stage_layers", parallel.stage_layers),
      NUPIPE_KEY("parallel.schedule", parallel.schedule),
      NUPIPE_KEY("parallel.zero", parallel.zero),
      NUPIPE_KEY("train.steps", train.steps),
      NUPIPE_KEY("train.seed", train.seed),
      NUPIPE_KEY("train.global_batch", train.global_batch),
      NUPIPE_KEY("train.micro_batch", train.micro_batch),
      NUPIPE_KEY("train.val_every", train.val_every),
      NUPIPE_KEY("train.val_batches", train.val_batches),
      NUPIPE_KEY("train.loss_chunk", train.loss_chunk),
      NUPIPE_KEY("train.recompute", train.recompute),
      NUPIPE_KEY("optim.lr", adamw.lr),
      NUPIPE_KEY("optim.beta1", adamw.beta1),
      NUPIPE_KEY("optim.beta2", adamw.beta2),
      NUPIPE_KEY("optim.eps", adamw.eps),
      NUPIPE_KEY("optim.weight_decay", adamw.weight_decay),
      NUPIPE_KEY("optim.warmup_steps", lr.warmup_steps),
      NUPIPE_KEY("optim.min_lr_ratio", lr.min_lr_ratio),
      NUPIPE_KEY("optim.grad_clip", clip.max_norm),
      NUPIPE_KEY("data.train", data.train),
      NUPIPE_KEY("data.val", data.val),
      NUPIPE_KEY("data.synthetic.order", data.synthetic.order),
      NUPIPE_KEY("data.synthetic.alphabet", data.synthetic.alphabet),
      NUPIPE_KEY("data.synthetic.branching", data.synthetic.branching),
      NUPIPE_KEY("data.synthetic.smoothing", data.synthetic.smoothing),
      NUPIPE_KEY("data.synthetic.train_tokens", data.synthetic.train_tokens),
      NUPIPE_KEY("data.synthetic.val_tokens", data.synthetic.val_tokens),
      NUPIPE_KEY("data.synthetic.seed", data.synthetic.seed),
      NUPIPE_KEY("checkpoint.every", checkpoint.every),
      NUPIPE_KEY("checkpoint.keep", checkpoint.keep),
      NUPIPE_KEY("checkpoint.keep_every", checkpoint.keep_every),
      NUPIPE_KEY("checkpoint.dir", checkpoint.dir),
      NUPIPE_KEY("checkpoint.resume", checkpoint.resume),
      NUPIPE_KEY("checkpoint.strict", checkpoint.strict),
      NUPIPE_KEY("checkpoint.on_signal", checkpoint.on_signal),
      NUPIPE_KEY("checkpoint.on_write_error", checkpoint.on_write_error),
      NUPIPE_KEY("checkpoint.async", checkpoint.async),
      NUPIPE_KEY("run.dir", run.dir),
      NUPIPE_KEY("run.log_every", run.log_every),
      NUPIPE_KEY("run.trace", run.trace),
      NUPIPE_KEY("runtime.device", runtime.device),
      NUPIPE_KEY("runtime.precision", runtime.precision),
      NUPIPE_KEY("runtime.flush_denormals", runtime.flush_denormals),
      NUPIPE_KEY("runtime.gemm_epilogues", runtime.gemm_epilogues),
      NUPIPE_KEY("runtime.comm", runtime.comm),
      NUPIPE_KEY("runtime.attention", runtime.attention),
      NUPIPE_KEY("runtime.threads", runtime.threads),
      NUPIPE_KEY("runtime.peer_timeout_s", runtime.peer_timeout_s),
      NUPIPE_KEY("runtime.memory_gib", runtime.memory_gib),
      NUPIPE_KEY("runtime.tflops", runtime.tflops),
      NUPIPE_KEY("runtime.calibration", runtime.calibration),
  };
  return keys;
}
#undef NUPIPE_KEY

const Key* find_key(std::string_view path) {
  for (const Key& k : schema())
    if (k.path == path) return &k;
  return nullptr;
}
bool is_section(std::string_view path) {
  return std::find(std::begin(kSections), std::end(kSections), path) != std::end(kSections);
}
std::string_view parent_of(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : path.substr(0, dot);
}
std::string_view leaf_of(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}
std::string join(std::string_view prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : std::string(prefix) + "." + std::string(name);
}

// ---- formatting ------------------------------------------------------------------------

std::string with_point(std::string s) {  // TOML needs a '.' or an exponent to read a float
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 'n': inf, nan
  return s;
}
std::string format_double(double v) {
  char buf[64];
  return with_point(std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr));
}
// The shortest text that reads back (as a double, then narrowed) to the same float.
std::string format_float(float v) {
  char buf[64];
  std::string s(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  if (static_cast<float>(std::strtod(s.c_str(), nullptr)) != v) return format_double(v);
  return with_point(s);
}
std::string format_value(const Key& key, Config& c) {
  return std::visit(
      [&](auto ref) -> std::string {
        const auto& v = ref(c);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, float>) return format_float(v);
        else if constexpr (std::is_same_v<T, double>) return format_double(v);
        else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::string>) return quote(v);
        else if constexpr (std::is_same_v<T, parallel::StageLayersSpec>)
          return parallel::format_stage_layers(v);  // a TOML string or array
        else if constexpr (std::is_same_v<T, parallel::RecomputeSpec>)
          return parallel::format_recompute(v);
        else if constexpr (std::is_same_v<T, std::vector<double>>) {
          if (v.size() == 1) return format_double(v[0]);
          std::string t = "[";
          for (size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + format_double(v[i]);
          return t + "]";
        }
        else return std::to_string(v);
      },
      key.field);
}
std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}
std::string_view expected_name(const Key& key) {
  switch (key.field.index()) {
    case 0: case 1: case 2: return "an integer";
    case 3: case 4: return "a number";
    case 5: return "a boolean (true or false)";
    case 6: return "a string";
    case 7: return "an array of integers, \"uniform\" or \"auto\"";
    case 8: return "an array of integers (blocks per stage), \"none\", \"full\" or \"auto\"";
    default: return "a number, or an array of numbers (one per stage)";
  }
}
std::string example(const Key& key) {  // "model.d_model = 64", from the struct default
  Config defaults;
  std::string text = std::string(key.path) + " = " + format_value(key, defaults);
  if (std::holds_alternative<LayersRef>(key.field))
    text += " (or \"auto\", or blocks per stage such as [1, 3])";
  if (std::holds_alternative<RecomputeRef>(key.field))
    text += " (or \"full\", or recomputed blocks per stage such as [1, 0])";
  return text;
}

// ---- did you mean ----------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {  // with transpositions
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// " (did you mean 'model.n_layer'?)" or "": a near name in the same table, the same key
// name in another table (train.lr -> optim.lr), or a key this one abbreviates.
std::string did_you_mean(std::string_view path) {
  const std::string_view leaf = leaf_of(path), parent = parent_of(path);
  const size_t limit = std::clamp<size_t>(leaf.size() / 3, 1, 3);
  std::vector<std::string_view> names(std::begin(kSections), std::end(kSections));
  for (const Key& k : schema()) names.push_back(k.path);
  std::string_view best;
  size_t best_score = SIZE_MAX;
  for (std::string_view name : names) {
    const std::string_view cand_leaf = leaf_of(name);
    size_t score = SIZE_MAX;
    if (parent_of(name) == parent) {
      const size_t d = edit_distance(leaf, cand_leaf);
      if (d <= limit) score = d;
      else if (leaf.size() >= 3 && cand_leaf.starts_with(leaf)) score = limit + 1;
    } else if (cand_leaf == leaf) {  // prefer data.synthetic.seed for data.seed
      score = name.starts_with(std::string(parent) + ".") && !parent.empty() ? limit + 2 : limit + 3;
    }
    if (score < best_score) best_score = score, best = name;
  }
  return best.empty() ? std::string{} : " (did you mean '" + std::string(best) + "'?)";
}

// ---- reading the table into Config -----------------------------------------------------

struct Problem {
  std::pair<uint64_t, uint64_t> at;  // line, column: the first problem in the file is reported
  Error error;
};

std::string location(std::string_view source, const toml::node& n) {
  const auto& b = n.source().begin;
  if (b.line == 0) return std::string(source);
  return std::string(source) + ":" + std::to_string(b.line) + ":" + std::to_string(b.column);
}

// Stores `n` into the field, or returns what is wrong with it.
std::optional<std::string> store(const Key& key, const toml::node& n, Config& c) {
  const std::string name(key.path);
  auto wrong_type = [&] {
    return name + " must be " + std::string(expected_name(key)) + ", got " +
           std::string(type_name(n));
  };
  return std::visit(
      [&](auto ref) -> std::optional<std::string> {
        auto& field = ref(c);
        using T = std::decay_t<decltype(field)>;
        // An array of 32-bit integers, or what is wrong with it.
        auto int_list = [&](const toml::array& arr, std::vector<int>& out)
            -> std::optional<std::string> {
          for (size_t i = 0; i < arr.size(); ++i) {
            const toml::node& e = *arr.get(i);
            if (!e.is_integer())
              return name + " must be " + std::string(expected_name(key)) +
                     ", got an array with entry " + std::to_string(i) + " of type " +
                     std::string(type_name(e));
            const int64_t v = e.as_integer()->get();
            if (v < INT_MIN || v > INT_MAX)
              return name + "[" + std::to_string(i) + "] = " + std::to_string(v) +
                     " does not fit in a 32-bit integer";
            out.push_back(static_cast<int>(v));
          }
          return std::nullopt;
        };
        if constexpr (std::is_same_v<T, parallel::StageLayersSpec>) {
          using Kind = parallel::StageLayersSpec::Kind;
          if (const auto* str = n.as_string()) {
            if (str->get() == "uniform") field = {Kind::uniform, {}};
            else if (str->get() == "auto") field = {Kind::automatic, {}};
            else return wrong_type() + " " + quote(str->get());
          } else if (const auto* arr = n.as_array()) {
            parallel::StageLayersSpec spec{Kind::explicit_list, {}};
            if (auto what = int_list(*arr, spec.layers)) return what;
            field = std::move(spec);
          } else {
            return wrong_type();
          }
        } else if constexpr (std::is_same_v<T, parallel::RecomputeSpec>) {
          using Kind = parallel::RecomputeSpec::Kind;
          if (const auto* str = n.as_string()) {
            if (str->get() == "none") field = {Kind::none, {}};
            else if (str->get() == "full") field = {Kind::full, {}};
            else if (str->get() == "auto") field = {Kind::automatic, {}};
            else return wrong_type() + " " + quote(str->get());
          } else if (const auto* arr = n.as_array()) {
            parallel::RecomputeSpec spec{Kind::per_stage, {}};
            if (auto what = int_list(*arr, spec.blocks)) return what;
            field = std::move(spec);
          } else {
            return wrong_type();
          }
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          std::vector<double> out;
          auto number = [&](const toml::node& e, const std::string& at) -> std::optional<std::string> {
            if (!e.is_number()) return at + " must be a number, got " + std::string(type_name(e));
            const double v = e.is_integer() ? static_cast<double>(e.as_integer()->get())
                                            : e.as_floating_point()->get();
            if (!std::isfinite(v)) return at + " must be a finite number";
            out.push_back(v);
            return std::nullopt;
          };
          if (const auto* arr = n.as_array()) {
            if (arr->empty()) return name + " is an empty array: give a number or one per stage";
            for (size_t i = 0; i < arr->size(); ++i) {
              if (auto what = number(*arr->get(i), name + "[" + std::to_string(i) + "]")) return what;
            }
          } else if (n.is_number()) {
            if (auto what = number(n, name)) return what;
          } else {
            return wrong_type();
          }
          field = std::move(out);
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!n.is_boolean()) return wrong_type();
          field = n.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!n.is_string()) return wrong_type();
          field = n.as_string()->get();
        } else if constexpr (std::is_floating_point_v<T>) {
          if (!n.is_number()) return wrong_type();
          const double v = n.is_integer() ? static_cast<double>(n.as_integer()->get())
                                          : n.as_floating_point()->get();
          const T narrowed = static_cast<T>(v);
          if (!std::isfinite(narrowed))
            return name + " must be a finite number" +
                   (std::is_same_v<T, float> ? " within 32-bit float range" : "") + ", got " +
                   format_double(v);
          field = narrowed;
        } else {
          if (!n.is_integer()) return wrong_type();
          const int64_t v = n.as_integer()->get();
          if constexpr (std::is_same_v<T, int>) {
            if (v < INT_MIN || v > INT_MAX)
              return name + " = " + std::to_string(v) + " does not fit in a 32-bit integer";
          }
          if constexpr (std::is_unsigned_v<T>) {
            if (v < 0) return name + " must be >= 0, got " + std::to_string(v);
          }
          field = static_cast<T>(v);
        }
        return std::nullopt;
      },
      key.field);
}

// Walks the parsed table: unknown sections and keys, sections that are not tables, values of
// the wrong type. Fills `c` and records where each key was set.
void read_table(const toml::table& table, const std::string& prefix, std::string_view source,
                Config& c, Origins& origins, std::vector<Problem>& problems) {
  for (const auto& [k, node] : table) {
    const std::string path = join(prefix, k.str());
    const auto over = origins.find(path);
    const bool overridden = over != origins.end();
    const std::string where = overridden ? over->second : location(source, node);
    const auto& b = node.source().begin;
    const std::pair<uint64_t, uint64_t> at =
        overridden || b.line == 0 ? std::pair<uint64_t, uint64_t>{UINT64_MAX, problems.size()}
                                  : std::pair<uint64_t, uint64_t>{b.line, b.column};
    const Key* key = k.str().find('.') == std::string::npos ? find_key(path) : nullptr;
    if (key) {
      if (auto what = store(*key, node, c))
        problems.push_back({at, usage_error(where + ": " + *what, "write it as " + example(*key))});
      else if (!overridden)
        origins[path] = where;
    } else if (is_section(path)) {
      if (node.is_table())
        read_table(*node.as_table(), path, source, c, origins, problems);
      else
        problems.push_back({at, usage_error(where + ": " + path + " must be a table, got " +
                                                std::string(type_name(node)),
                                            "write it as a section: [" + path + "]")});
    } else {
      const bool table = node.is_table();
      std::string hint = "remove it or correct its name; docs/config.md lists every key";
      problems.push_back({at, usage_error(where + ": unknown " + (table ? "section" : "key") +
                                              " '" + path + "'" + did_you_mean(path),
                                          hint)});
    }
  }
}

// ---- --set overrides -------------------------------------------------------------------

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? std::string{} : std::string(s.substr(b, e - b + 1));
}

void apply_override(toml::table& root, const std::string& text, Origins& origins) {
  const std::string where = "--set " + text;
  const std::string form_hint = "write it as --set section.key=value, e.g. --set train.steps=100";
  // (The message shows the offending bytes as \xNN: Error's text is printable().)
  if (const size_t bad = first_invalid_utf8(text); bad != std::string::npos) {
    throw usage_error(where + ": not UTF-8 text (at byte " + std::to_string(bad) +
                          "): config values are TOML strings, which are UTF-8, and the run's "
                          "config.toml must hold them",
                      "write the value in UTF-8 (rename a path whose name is not)");
  }
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    throw usage_error("malformed override '" + text + "': expected section.key=value", form_hint);
  const std::string path = trim(std::string_view(text).substr(0, eq));
  const std::string value = trim(std::string_view(text).substr(eq + 1));
  if (path.empty() || path.front() == '.' || path.back() == '.' ||
      path.find("..") != std::string::npos)
    throw usage_error("malformed override '" + text + "': '" + path + "' is not a dotted key",
                      form_hint);
  const Key* key = find_key(path);
  if (!key) {
    if (is_section(path))
      throw usage_error(where + ": '" + path + "' is a section, not a key",
                        "set its keys one at a time, e.g. --set " + path + ".<key>=value");
    throw usage_error(where + ": unknown key '" + path + "'" + did_you_mean(path),
                      "docs/config.md lists every key");
  }

  // The value as TOML if it is one (3, 0.5, true, "x", [1,2]), else the text itself.
  std::optional<toml::table> parsed;
  try {
    toml::table t = toml::parse("v = " + value, std::string_view("--set"));
    if (t.size() == 1 && t.contains("v")) parsed = std::move(t);
  } catch (const toml::parse_error&) {
  }
  // For a string key the text is the only sensible reading (run.dir=2024, data.val=true).
  if (parsed && std::holds_alternative<StrRef>(key->field) && !parsed->get("v")->is_string())
    parsed.reset();

  toml::table* table = &root;
  std::string so_far;
  std::string_view rest = path;
  for (size_t dot; (dot = rest.find('.')) != std::string_view::npos; rest.remove_prefix(dot + 1)) {
    const std::string seg(rest.substr(0, dot));
    so_far = join(so_far, seg);
    toml::node* n = table->get(seg);
    if (!n) n = &table->insert(seg, toml::table{}).first->second;
    if (!n->is_table())
      throw usage_error(where + ": " + so_far + " must be a table, got " +
                            std::string(type_name(*n)),
                        "write it as a section: [" + so_far + "]");
    table = n->as_table();
  }
  if (parsed) table->insert_or_assign(std::string(rest), *parsed->get("v"));
  else table->insert_or_assign(std::string(rest), value);
  origins[path] = where;
}

}  // namespace

Config parse_config(std::string_view toml_text, std::string_view source,
                    const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    const std::string at = std::string(source) + ":" + std::to_string(b.line) + ":" +
                           std::to_string(b.column);
    throw usage_error(at + ": TOML syntax error: " + std::string(e.description()),
                      "fix the syntax at line " + std::to_string(b.line) + ", column " +
                          std::to_string(b.column) + " (TOML 1.0: https://toml.io)");
  }
  Origins origins;
  for (const std::string& o : overrides) apply_override(root, o, origins);
  expand_devices(root, source, origins);

  Config config;
  std::vector<Problem> problems;
  read_table(root, "", source, config, origins, problems);
  if (!problems.empty())
    throw std::min_element(problems.begin(), problems.end(),
                           [](const Problem& x, const Problem& y) { return x.at < y.at; })
        ->error;
  config.lr.total_steps = config.train.steps;
  for (const auto& [key, where] : origins) config.given.insert(key);
  config.warnings = validate(config, Checker(source, origins));
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw usage_error("config file '" + path + "' is a directory",
                      "pass a TOML file, e.g. configs/tiny.toml");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw usage_error("cannot open config file '" + path + "': " + std::strerror(errno),
                      "check the path; configs/tiny.toml is a complete example");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw usage_error("cannot read config file '" + path + "': " + std::strerror(errno),
                      "check the file's permissions");
  return parse_config(text.str(), path, overrides);
}

std::string to_toml(const Config& config) {
  Config c = config;  // the schema's accessors take a mutable Config; this one is only read
  std::string out = "# nupipe effective configuration: every key, as validated.\n";
  for (std::string_view section : kSections) {
    out += "\n[" + std::string(section) + "]\n";
    for (const Key& key : schema())
      if (parent_of(key.path) == section && !family_refuses(key.path, c.model.family))
        out += std::string(leaf_of(key.path)) + " = " + format_value(key, c) + "\n";
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> key_values(const Config& config) {
  Config c = config;
  std::vector<std::pair<std::string, std::string>> out;
  for (const Key& key : schema()) {
    if (!family_refuses(key.path, c.model.family))
      out.emplace_back(std::string(key.path), format_value(key, c));
  }
  return out;
}

runtime::DType parse_precision(const std::string& precision) {
  return precision == "bf16" ? runtime::DType::bf16 : runtime::DType::f32;
}

runtime::ModelConfig model_that_runs(const Config& config) {
  runtime::ModelConfig m = config.model;
  m.loss_chunk = config.train.loss_chunk;
  m.dtype = parse_precision(config.runtime.precision);
  m.fused_attention = config.runtime.attention == "fused" ||
                      (config.runtime.attention == "auto" && config.runtime.device != "cuda");
  m.gemm_arena_bytes = config.runtime.device != "cuda" && m.dtype == runtime::DType::bf16
                           ? runtime::cpu::OnednnGemm::kArenaBytes
                           : 0;
  return m;
}

}  // namespace nupipe::launcher
