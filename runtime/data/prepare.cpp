// prepare.cpp: the text read in chunks, each cut where the tokenizer allows, encoded by a few
// tokenizer processes at once and streamed in order into a TokenFileWriter; the val split
// moved from the stream's tail at the end.
#include "runtime/data/prepare.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/data/token_file.h"
#include "runtime/data/token_meta.h"
#include "runtime/data/token_writer.h"
#include "runtime/error.h"

namespace nupipe::runtime {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

void check_options(const PrepareOptions& o) {
  if (!(o.val_fraction >= 0.0 && o.val_fraction < 1.0)) {
    throw usage_error("--val-fraction " + std::to_string(o.val_fraction) +
                          " is outside [0, 1)",
                      "give the share of the tokens for validation, e.g. --val-fraction 0.01");
  }
  if (o.val_fraction > 0.0 && o.val_path.empty()) {
    throw usage_error("--val-fraction needs --val-out (where the validation tokens go)",
                      "add --val-out FILE.bin");
  }
  if (o.val_fraction == 0.0 && !o.val_path.empty()) {
    throw usage_error("--val-out " + o.val_path + " needs --val-fraction above 0",
                      "add --val-fraction 0.01 (the last 1% of the tokens)");
  }
  if (!o.val_path.empty() && o.val_path == o.out_path) {
    throw usage_error("--val-out and --out are the same file " + o.out_path,
                      "give the validation tokens a file of their own");
  }
  if (o.out_path == o.text_path || o.val_path == o.text_path) {
    throw usage_error("an output file is the input text " + o.text_path,
                      "write the tokens to a new file, e.g. --out " + o.text_path + ".bin");
  }
}

}  // namespace

PrepareStats prepare_tokens(const PrepareOptions& o) {
  check_options(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  FilePtr in(std::fopen(o.text_path.c_str(), "rb"));
  if (!in) {
    const int err = errno;
    throw data_error("cannot open input text " + o.text_path + ": " + std::strerror(err),
                     "check the --text path");
  }
  struct stat st {};
  const int64_t total = ::fstat(::fileno(in.get()), &st) == 0 ? st.st_size : 0;

  // Chunks go round-robin to `workers` tokenizers, each with one chunk in flight; their
  // tokens are appended in the text's order.
  int workers = 1;
  if (o.tokenizer == TokenizerKind::gpt2) {
    workers = o.workers > 0 ? o.workers
                            : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  }
  std::vector<std::unique_ptr<Tokenizer>> tok;
  for (int w = 0; w < workers; ++w) tok.push_back(Tokenizer::open(o.tokenizer));
  TokenFileWriter train(o.out_path);
  std::unique_ptr<TokenFileWriter> val;
  if (o.val_fraction > 0.0) val = std::make_unique<TokenFileWriter>(o.val_path);

  PrepareStats stats;
  stats.library = tok[0]->library();
  stats.workers = workers;
  struct InFlight {
    size_t worker;
    std::string text;
  };
  std::deque<InFlight> flight;  // oldest first
  size_t next_worker = 0;
  std::string pending;  // read, not yet sent
  std::vector<char> chunk(std::max<size_t>(o.chunk_bytes, 1));
  std::vector<uint16_t> ids;
  int64_t sent_bytes = 0, encoded_bytes = 0;
  auto receive_oldest = [&] {
    InFlight& f = flight.front();
    ids.clear();
    tok[f.worker]->receive(ids);
    train.append(ids.data(), static_cast<int64_t>(ids.size()));
    encoded_bytes += static_cast<int64_t>(f.text.size());
    flight.pop_front();
    if (o.progress) o.progress({encoded_bytes, total, train.size(), elapsed()});
  };
  auto encode = [&](size_t n) {
    const std::string_view piece(pending.data(), n);
    if (tok[0]->needs_utf8()) {
      const int64_t bad = first_invalid_utf8(piece);
      if (bad >= 0) {
        throw data_error("input text " + o.text_path + " is not valid UTF-8 at byte offset " +
                             std::to_string(sent_bytes + bad),
                         "convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8), or use "
                         "--tokenizer byte, which takes any bytes");
      }
    }
    if (flight.size() == static_cast<size_t>(workers)) receive_oldest();  // frees next_worker
    flight.push_back({next_worker, std::string(piece)});
    tok[next_worker]->send(flight.back().text);
    next_worker = (next_worker + 1) % static_cast<size_t>(workers);
    pending.erase(0, n);
    sent_bytes += static_cast<int64_t>(n);
    ++stats.chunks;
  };
  for (;;) {
    const size_t got = std::fread(chunk.data(), 1, chunk.size(), in.get());
    pending.append(chunk.data(), got);
    stats.bytes_in += static_cast<int64_t>(got);
    if (got < chunk.size()) {
      if (std::ferror(in.get())) {
        const int err = errno;
        throw data_error("cannot read input text " + o.text_path + " after " +
                             std::to_string(stats.bytes_in) + " bytes: " + std::strerror(err),
                         "check that --text names a readable regular file");
      }
      break;  // end of file
    }
    // Encode what can be cut off safely; a chunk without such a place waits for more text.
    if (pending.size() >= chunk.size()) {
      const size_t cut = tok[0]->safe_cut(pending);
      if (cut > 0) encode(cut);
    }
  }
  if (!pending.empty()) encode(pending.size());
  while (!flight.empty()) receive_oldest();

  if (stats.bytes_in == 0) {
    throw data_error("input text " + o.text_path + " is empty", "give a non-empty file to --text");
  }
  const int64_t n = train.size();
  const int64_t n_val = val ? std::llround(o.val_fraction * static_cast<double>(n)) : 0;
  if (n - n_val < 2 || (val && n_val < 2)) {
    throw data_error("input text " + o.text_path + " gives " + std::to_string(n) + " token" +
                         (n == 1 ? "" : "s") +
                         (val ? ", " + std::to_string(n_val) + " of them for validation" : "") +
                         "; a token file needs at least 2 (an input and its target)",
                     val ? "give a longer text or change --val-fraction"
                         : "give a longer file to --text");
  }
  if (val) train.move_tail_to(*val, n_val);
  train.commit();
  TokenFileMeta meta{tokenizer_name(o.tokenizer), tokenizer_vocab(o.tokenizer), stats.library,
                     o.text_path, stats.bytes_in, train.size(), val ? "train" : "all",
                     o.val_fraction};
  write_token_meta(o.out_path, meta);
  if (val) {
    val->commit();
    meta.tokens = val->size();
    meta.split = "val";
    write_token_meta(o.val_path, meta);
  }
  stats.tokens = n;
  stats.val_tokens = n_val;
  stats.seconds = elapsed();
  return stats;
}

PrepareStats prepare_bytes(const std::string& text_path, const std::string& out_path) {
  PrepareOptions o;
  o.text_path = text_path;
  o.out_path = out_path;
  return prepare_tokens(o);
}

}  // namespace nupipe::runtime
