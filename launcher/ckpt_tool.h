// ckpt_tool.h: the `nupipe ckpt inspect|verify DIR` verbs, for the SRE deciding what to resume.
#pragma once

#include <string>

namespace nupipe::launcher {

// Prints the step, the layout that wrote it, the training state, every tensor with its shape
// and the saved config (after verifying the checksums; a damaged checkpoint is reported and
// not parsed). Returns the exit code (0, or 4).
int ckpt_inspect(const std::string& dir, bool json);
// Verifies every byte against the manifest; prints OK or each problem. Returns 0 or 4.
int ckpt_verify(const std::string& dir);

}  // namespace nupipe::launcher
