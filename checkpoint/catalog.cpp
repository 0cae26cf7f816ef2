// catalog.cpp: listing, retention and cleanup of a checkpoint.dir.
#include "checkpoint/catalog.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace nupipe::checkpoint {

namespace fs = std::filesystem;

int64_t step_of(const std::string& name) {
  const std::string prefix = "step_";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i])) || v > (int64_t{1} << 50)) return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

Catalog list_checkpoints(const std::string& root) {
  Catalog c;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return c;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    if (!e.is_directory(ec)) continue;
    const std::string name = e.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        step_of(name.substr(0, name.size() - 4)) >= 0) {
      c.uncommitted.push_back(e.path().string());
    } else if (const int64_t step = step_of(name); step >= 0) {
      c.committed.push_back({step, e.path().string()});
    }
  }
  std::sort(c.committed.begin(), c.committed.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step > b.step; });
  std::sort(c.uncommitted.begin(), c.uncommitted.end());
  return c;
}

std::vector<std::string> apply_retention(const std::string& root, int keep) {
  std::vector<std::string> deleted;
  const Catalog c = list_checkpoints(root);
  keep = std::max(keep, 1);
  for (size_t i = static_cast<size_t>(keep); i < c.committed.size(); ++i) {
    std::error_code ec;
    fs::remove_all(c.committed[i].path, ec);
    if (!ec) deleted.push_back(c.committed[i].path);
  }
  return deleted;
}

std::vector<std::string> remove_uncommitted(const std::string& root) {
  std::vector<std::string> removed;
  for (const std::string& p : list_checkpoints(root).uncommitted) {
    std::error_code ec;
    fs::remove_all(p, ec);
    if (!ec) removed.push_back(p);
  }
  return removed;
}

}  // namespace nupipe::checkpoint
