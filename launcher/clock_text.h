// clock_text.h: the wall clock as the launcher records it: seconds since the Unix epoch and
// their ISO-8601 UTC text (whole seconds in outcome.json and run.lock, milliseconds in metrics).
#pragma once

#include <chrono>
#include <string>

namespace nupipe::launcher {

// Seconds since the Unix epoch, now (system clock).
double unix_now();
// "2026-12-02T05:48:07Z": `unix_s` truncated to the second.
std::string utc_text(double unix_s);
// "2026-12-02T05:48:07.123Z": `t` truncated to the millisecond.
std::string iso8601_utc(std::chrono::system_clock::time_point t);

}  // namespace nupipe::launcher
