// manifest.h: a checkpoint's manifest.json, written last: the format version, the step, the
// layout that wrote it, and for each file its size and an xxHash (XXH3-64) of every byte
// range of it (each rank's piece of each dataset, and HDF5's own metadata), so that any damage
// is found, and named, before the HDF5 library parses a byte of the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nupipe::checkpoint {

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kStateFileName = "state.h5";

// One byte range of a file and its hash. `what` names it: "model/blocks.0.mlp.fc.weight
// [0, 4096)" (a dataset's elements) or "hdf5 metadata".
struct Region {
  std::string what;
  int64_t offset = 0;
  int64_t bytes = 0;
  uint64_t xxh3 = 0;
};

struct ManifestFile {
  std::string name;  // relative to the checkpoint directory
  int64_t bytes = 0;
  std::vector<Region> regions;  // sorted by offset; together they cover [0, bytes) exactly
};

struct Manifest {
  int format_version = kFormatVersion;
  int64_t step = 0;                // steps completed when it was written
  std::string nupipe_version;
  std::string layout;              // "pipeline 2 x data 2, stage_layers [1, 3], zero 1"
  std::vector<ManifestFile> files;

  std::string to_json() const;
  // Throws nupipe::Error (checkpoint) naming `source` when the text is not a manifest.
  static Manifest parse(const std::string& text, const std::string& source);
  static Manifest read(const std::string& dir);  // dir/manifest.json
};

uint64_t xxh3(const void* data, size_t bytes);

// XXH3-64 over bytes fed in pieces: digest() equals xxh3() of their concatenation (a region
// hashed a staged chunk at a time has the checksum of the region hashed at once).
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(const Xxh3Stream&) = delete;
  Xxh3Stream& operator=(const Xxh3Stream&) = delete;
  void reset();
  void update(const void* data, size_t bytes);
  uint64_t digest() const;

 private:
  struct State;
  State* state_;
};

// Hashes `file`'s bytes between the given regions (what no region covers: HDF5's metadata)
// and returns those as regions named "hdf5 metadata"; `regions` must not overlap.
std::vector<Region> hash_gaps(const std::string& path, int64_t file_bytes,
                              const std::vector<Region>& regions);

// Checks dir's files against the manifest without parsing them: sizes, that the regions
// tile each file, and the hashes of regions i with i % parts == part (so that `parts` ranks
// share the reading). Returns one line per problem ("state.h5: model/x [0, 64) at byte
// 2048: checksum mismatch"); empty when everything checked is intact.
std::vector<std::string> verify_files(const std::string& dir, const Manifest& manifest,
                                      int part = 0, int parts = 1);

}  // namespace nupipe::checkpoint
