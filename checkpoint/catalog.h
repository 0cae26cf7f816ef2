// catalog.h: the checkpoints of a checkpoint.dir: committed ones (step_NNNNNNNN/) newest
// first, uncommitted leftovers (step_NNNNNNNN.tmp/ of a save that never finished), the
// retention rule (the newest `keep` and every milestone), and what a path that is not a
// checkpoint is instead (missing, a file, a directory of checkpoints, a run directory).
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

// A milestone: a checkpoint whose step is a multiple of keep_every (checkpoint.keep_every;
// 0: none), which retention never deletes.
bool is_milestone(int64_t step, int keep_every);

// Deletes committed checkpoints beyond the newest `keep` (keep >= 1: the newest is never
// deleted), except milestones (is_milestone). Returns the deleted paths.
std::vector<std::string> apply_retention(const std::string& root, int keep, int keep_every = 0);

// Whether `path` can be a checkpoint directory, from names alone (nothing is read): empty
// when it may be (a directory named step_N or holding manifest.json or state.h5), else the
// problem and a hint: it does not exist (with the committed checkpoints of its parent, newest
// first, and the one a mistyped step_N meant), it is a file (state.h5 or manifest.json: its
// directory is meant), it is a directory of checkpoints or a run directory (with the newest
// committed checkpoint in it), or a directory that holds no checkpoint.
struct PathProblem {
  std::string what;
  std::string hint;
  std::string suggestion;  // the checkpoint the hint proposes, if any
};
PathProblem check_checkpoint_path(const std::string& path);

// check_checkpoint_path's problem as nupipe::Error (checkpoint, exit code 4). `usage` shows how
// a checkpoint is named here, with {} for the path ("nupipe ckpt verify {}"); the hint ends
// with it applied to the suggestion.
void require_checkpoint_path(const std::string& path, const std::string& usage);

// Removes the uncommitted leftovers; returns them.
std::vector<std::string> remove_uncommitted(const std::string& root);

// A checkpoint directory's step from its name (step_00000040 -> 40), -1 if not one.
int64_t step_of(const std::string& dir_name);

}  // namespace nupipe::checkpoint
