// config_devices.h: `[[runtime.devices]]`, the per-stage devices of a heterogeneous pipeline
// (internal to launcher/config.cpp). Each table names how many consecutive stages run on one
// kind of device and that device's memory and throughput; loading resolves the list, once, into
// the per-stage lists runtime.memory_gib and runtime.tflops that the rest of nupipe reads (and
// that the effective config written into run.dir and checkpoints holds).
#pragma once

#include <string_view>

#include <toml++/toml.h>

#include "launcher/config_checks.h"

namespace nupipe::launcher {

// Replaces root's runtime.devices by runtime.memory_gib and runtime.tflops, one entry per
// stage; refuses (usage_error naming file:line:column) a malformed list, unknown or mistyped
// keys, lists that do not cover parallel.pipeline stages, and devices given together with
// runtime.memory_gib or runtime.tflops. Nothing to do without runtime.devices.
void expand_devices(toml::table& root, std::string_view source, Origins& origins);

}  // namespace nupipe::launcher
