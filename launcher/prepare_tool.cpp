// prepare_tool.cpp: runs runtime::prepare_tokens with a progress line on stderr (rewritten in
// place on a terminal, a line every 5 s otherwise) and prints one summary line per file.
#include "launcher/prepare_tool.h"

#include <unistd.h>

#include <cstdio>

#include "runtime/data/prepare.h"

namespace nupipe::launcher {

namespace {

void print_progress(const runtime::PrepareProgress& p, bool tty, bool final_line) {
  const double mb = p.bytes_done / 1e6;
  std::fprintf(stderr, "%sprepare: %.1f of %.1f MB (%.0f%%), %lld tokens, %.1f MB/s%s",
               tty ? "\r" : "", mb, p.bytes_total / 1e6,
               p.bytes_total > 0 ? 100.0 * static_cast<double>(p.bytes_done) /
                                       static_cast<double>(p.bytes_total)
                                 : 100.0,
               static_cast<long long>(p.tokens), p.seconds > 0 ? mb / p.seconds : 0.0,
               tty && !final_line ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace

int run_prepare(const PrepareCommand& cmd) {
  runtime::PrepareOptions o;
  o.text_path = cmd.text_path;
  o.out_path = cmd.out_path;
  o.tokenizer = runtime::parse_tokenizer(cmd.tokenizer);
  o.val_fraction = cmd.val_fraction;
  o.val_path = cmd.val_path;
  const bool tty = ::isatty(2) == 1;
  double next_report = tty ? 0.2 : 5.0;
  bool reported = false;
  runtime::PrepareProgress last;
  o.progress = [&](const runtime::PrepareProgress& p) {
    last = p;
    if (p.seconds < next_report) return;
    print_progress(p, tty, false);
    reported = true;
    next_report = p.seconds + (tty ? 0.2 : 5.0);
  };
  const runtime::PrepareStats s = runtime::prepare_tokens(o);
  if (reported) print_progress(last, tty, true);
  const int vocab = runtime::tokenizer_vocab(o.tokenizer);
  const char* what = o.tokenizer == runtime::TokenizerKind::gpt2 ? "GPT-2 BPE" : "byte-level";
  std::printf("wrote %s: %lld tokens (%s, vocab %d) from %lld bytes of %s\n",
              cmd.out_path.c_str(), static_cast<long long>(s.tokens - s.val_tokens), what, vocab,
              static_cast<long long>(s.bytes_in), cmd.text_path.c_str());
  if (s.val_tokens > 0) {
    std::printf("wrote %s: %lld tokens, the last %.4g%% of the text's tokens (validation)\n",
                cmd.val_path.c_str(), static_cast<long long>(s.val_tokens),
                100.0 * static_cast<double>(s.val_tokens) / static_cast<double>(s.tokens));
  }
  std::printf("tokenizer %s (%s, %d process%s): %lld tokens from %lld bytes (%.3f "
              "bytes/token) in %.2f s, %.1f MB/s; recorded in %s.json\n",
              runtime::tokenizer_name(o.tokenizer), s.library.c_str(), s.workers,
              s.workers == 1 ? "" : "es",
              static_cast<long long>(s.tokens), static_cast<long long>(s.bytes_in),
              static_cast<double>(s.bytes_in) / static_cast<double>(s.tokens), s.seconds,
              s.seconds > 0 ? s.bytes_in / 1e6 / s.seconds : 0.0, cmd.out_path.c_str());
  return 0;
}

}  // namespace nupipe::launcher
