// prepare_tool.h: `nupipe data prepare`: the command line's options, a progress line while
// the text is tokenized, and the summary of what was written.
#pragma once

#include <string>

namespace nupipe::launcher {

struct PrepareCommand {
  std::string text_path;
  std::string out_path;
  std::string tokenizer = "byte";  // "byte" or "gpt2"
  double val_fraction = 0;         // > 0: the last share of the tokens to val_path
  std::string val_path;
};

// Throws nupipe::Error (data 3, usage 2) as runtime::prepare_tokens does.
int run_prepare(const PrepareCommand& cmd);

}  // namespace nupipe::launcher
