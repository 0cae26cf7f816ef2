// clock_text.cpp: the Unix-epoch clock and its ISO-8601 UTC text, one strftime format for the
// whole-second and the millisecond forms.
#include "launcher/clock_text.h"

#include <cstdio>
#include <ctime>

namespace nupipe::launcher {

namespace {

// "YYYY-MM-DDTHH:MM:SS" of `t` in UTC (no zone letter).
std::string seconds_text(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string utc_text(double unix_s) {
  return seconds_text(static_cast<std::time_t>(unix_s)) + "Z";
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms.count() % 1000));
  return seconds_text(static_cast<std::time_t>(ms.count() / 1000)) + frac;
}

}  // namespace nupipe::launcher
