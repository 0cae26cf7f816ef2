// catalog.cpp: listing, retention (with milestones) and cleanup of a checkpoint.dir, and the
// diagnosis of a path that is not a checkpoint.
#include "checkpoint/catalog.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "checkpoint/manifest.h"
#include "runtime/error.h"

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

bool is_milestone(int64_t step, int keep_every) {
  return keep_every > 0 && step > 0 && step % keep_every == 0;
}

std::vector<std::string> apply_retention(const std::string& root, int keep, int keep_every) {
  std::vector<std::string> deleted;
  const Catalog c = list_checkpoints(root);
  keep = std::max(keep, 1);
  for (size_t i = static_cast<size_t>(keep); i < c.committed.size(); ++i) {
    if (is_milestone(c.committed[i].step, keep_every)) continue;
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

namespace {

// "a/step_00000024, a/step_00000016 and 3 older" (at most `shown` named).
std::string list_newest(const std::vector<CheckpointEntry>& committed, size_t shown = 4) {
  std::string out;
  for (size_t i = 0; i < committed.size() && i < shown; ++i) {
    out += (i ? ", " : "") + committed[i].path;
  }
  if (committed.size() > shown) {
    out += " and " + std::to_string(committed.size() - shown) + " older";
  }
  return out;
}

bool holds_checkpoint_files(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / kManifestName, ec) || fs::exists(dir / kStateFileName, ec);
}

}  // namespace

PathProblem check_checkpoint_path(const std::string& path) {
  std::error_code ec;
  std::string clean = path;  // "dir/" names dir
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  const fs::path p(clean);
  const std::string name = p.filename().string();
  const std::string parent_s = p.has_parent_path() ? p.parent_path().string() : ".";
  const fs::path parent(parent_s);
  if (!fs::exists(p, ec)) {
    PathProblem r{path + " does not exist", {}, {}};
    if (!fs::is_directory(parent, ec)) {
      r.what += " (nor does the directory " + parent_s + ")";
      r.hint = "check the path: a checkpoint is run.dir/checkpoints/step_NNNNNNNN";
      return r;
    }
    const Catalog c = list_checkpoints(parent.string());
    if (c.committed.empty()) {
      r.what += "; " + parent_s + " holds no committed checkpoint";
      r.hint = "check the path: a checkpoint is run.dir/checkpoints/step_NNNNNNNN";
      return r;
    }
    // The listing names paths as the user wrote the parent.
    std::vector<CheckpointEntry> named = c.committed;
    for (CheckpointEntry& e : named) {
      e.path = (fs::path(parent_s) / fs::path(e.path).filename()).string();
    }
    r.what += "; the committed checkpoints in " + parent_s + " are, newest first: " +
              list_newest(named);
    const int64_t meant = step_of(name);
    auto same = std::find_if(named.begin(), named.end(),
                             [&](const CheckpointEntry& e) { return e.step == meant; });
    const bool typo = meant >= 0 && same != named.end();
    r.hint = typo ? "checkpoint names have 8 digits; did you mean " + same->path + "?"
                  : "name one of them, e.g. the newest";
    r.suggestion = typo ? same->path : named.front().path;
    return r;
  }
  if (!fs::is_directory(p, ec)) {
    if (name == kManifestName || name == kStateFileName) {
      return {path + " is a file of a checkpoint, not its directory", "name the directory",
              parent_s};
    }
    return {path + " is a file, not a checkpoint directory",
            "a checkpoint is a directory, run.dir/checkpoints/step_NNNNNNNN", {}};
  }
  // step_N, or one set aside or unfinished (step_N.tmp, .damaged, .abandoned): verification
  // says what is wrong with it.
  if (step_of(name.substr(0, name.find('.'))) >= 0 || holds_checkpoint_files(p)) return {};
  for (const fs::path& root : {p, p / "checkpoints"}) {
    const Catalog c = list_checkpoints(root.string());
    if (c.committed.empty() && c.uncommitted.empty()) continue;
    const bool run_dir = root != p;
    PathProblem r{path + " is " + (run_dir ? "a run directory" : "a directory of checkpoints") +
                      ", not one checkpoint",
                  {},
                  {}};
    if (c.committed.empty()) {
      r.what += "; " + root.string() + " holds no committed checkpoint, only " +
                std::to_string(c.uncommitted.size()) + " unfinished save(s) (" +
                fs::path(c.uncommitted.front()).filename().string() + ")";
      r.hint = "an unfinished save is never loaded; start from step 0 or use another run";
      return r;
    }
    r.what += "; its newest committed checkpoint is " + c.committed.front().path + " (" +
              std::to_string(c.committed.size()) + " in all: " + list_newest(c.committed) + ")";
    r.hint = "name one checkpoint, e.g. the newest";
    r.suggestion = c.committed.front().path;
    return r;
  }
  return {path + " is not a checkpoint: it holds neither " + std::string(kManifestName) +
              " nor " + kStateFileName,
          "a checkpoint is a directory, run.dir/checkpoints/step_NNNNNNNN", {}};
}

void require_checkpoint_path(const std::string& path, const std::string& usage) {
  const PathProblem p = check_checkpoint_path(path);
  if (p.what.empty()) return;
  std::string hint = p.hint;
  if (!p.suggestion.empty() && !usage.empty()) {
    std::string example = usage;
    const size_t at = example.find("{}");
    if (at != std::string::npos) example.replace(at, 2, p.suggestion);
    hint += ": `" + example + "`";
  }
  throw checkpoint_error(p.what, hint);
}

}  // namespace nupipe::checkpoint
