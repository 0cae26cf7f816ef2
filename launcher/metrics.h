// metrics.h: run.dir/metrics.jsonl, one JSON object per logged step, flushed as written so a
// crashed run keeps every line it logged.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace nupipe::launcher {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // appends
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);

 private:
  std::FILE* file_;
  std::string path_;
};

}  // namespace nupipe::launcher
