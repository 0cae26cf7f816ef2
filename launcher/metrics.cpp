// metrics.cpp: append-only JSON-lines writer.
#include "launcher/metrics.h"

#include <cerrno>
#include <cstring>

#include "runtime/error.h"

namespace nupipe::launcher {

MetricsLog::MetricsLog(const std::string& path) : file_(std::fopen(path.c_str(), "a")), path_(path) {
  if (!file_) {
    throw usage_error("cannot open " + path + ": " + std::strerror(errno),
                      "check that run.dir is writable");
  }
}

MetricsLog::~MetricsLog() { std::fclose(file_); }

void MetricsLog::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    throw usage_error("cannot write " + path_ + ": " + std::strerror(errno),
                      "check free space in run.dir");
  }
}

}  // namespace nupipe::launcher
