// catalog.h: the checkpoints of a checkpoint.dir: committed ones (step_NNNNNNNN/) newest
// first, uncommitted leftovers (step_NNNNNNNN.tmp/ of a save that never finished), and the
// retention rule that deletes old ones only once a newer one is committed and verified.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nupipe::checkpoint {

struct CheckpointEntry {
  int64_t step = 0;
  std::string path;
};

struct Catalog {
  std::vector<CheckpointEntry> committed;  // newest first
  std::vector<std::string> uncommitted;    // *.tmp directories
};

// Lists `root` (a missing directory is an empty catalog). Other names are ignored.
Catalog list_checkpoints(const std::string& root);

// Deletes committed checkpoints beyond the newest `keep` (keep >= 1: the newest is never
// deleted). Returns the deleted paths.
std::vector<std::string> apply_retention(const std::string& root, int keep);

// Removes the uncommitted leftovers; returns them.
std::vector<std::string> remove_uncommitted(const std::string& root);

// A checkpoint directory's step from its name (step_00000040 -> 40), -1 if not one.
int64_t step_of(const std::string& dir_name);

}  // namespace nupipe::checkpoint
