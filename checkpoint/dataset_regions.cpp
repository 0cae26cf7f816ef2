// dataset_regions.cpp: each dataset of state.h5 (offset, extent, layout from its HDF5
// metadata) against the manifest's regions named after it, before any tensor byte is read.
#include "checkpoint/dataset_regions.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "checkpoint/h5_tensors.h"

namespace nupipe::checkpoint {

namespace {

std::string byte_span(int64_t offset, int64_t bytes) {
  return "bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) + ")";
}

// Why such a disagreement is refused, and what it means, at the end of each line.
constexpr const char* kNotThisFile =
    " (the manifest does not describe this file: it was edited, or belongs to another save)";

struct Claim {
  int64_t begin = 0, end = 0;
  const Region* region = nullptr;
};

}  // namespace

bool parse_data_region(const std::string& what, std::string* dataset, int64_t* begin,
                       int64_t* end) {
  const size_t open = what.rfind(" [");
  if (open == std::string::npos || open == 0) return false;
  long long b = -1, e = -1;
  int used = 0;
  if (std::sscanf(what.c_str() + open, " [%lld, %lld)%n", &b, &e, &used) != 2) return false;
  // Exactly the writer's form: no trailing text, no signs or leading zeros that would let two
  // spellings name one range.
  const std::string canonical =
      " [" + std::to_string(b) + ", " + std::to_string(e) + ")";
  if (what.compare(open, std::string::npos, canonical) != 0) return false;
  if (b < 0 || e < b) return false;
  *dataset = what.substr(0, open);
  *begin = b;
  *end = e;
  return true;
}

std::vector<std::string> check_dataset_regions(const std::string& dir, const Manifest& manifest) {
  const ManifestFile* file = nullptr;
  for (const ManifestFile& f : manifest.files) {
    if (f.name == kStateFileName) file = &f;
  }
  if (file == nullptr) return {std::string(kManifestName) + " lists no " + kStateFileName};
  const std::string where = std::string(kStateFileName) + ": ";
  std::vector<std::string> problems;

  std::map<std::string, std::vector<Claim>> claims;  // dataset -> its regions
  for (const Region& r : file->regions) {
    if (r.what == "hdf5 metadata") continue;
    Claim c;
    c.region = &r;
    std::string name;
    if (!parse_data_region(r.what, &name, &c.begin, &c.end)) {
      problems.push_back(where + "the manifest's region '" + r.what + "' at byte " +
                         std::to_string(r.offset) +
                         " is neither hdf5 metadata nor elements [begin, end) of a dataset" +
                         kNotThisFile);
      continue;
    }
    claims[name].push_back(c);
  }

  H5TensorReader reader(dir + "/" + kStateFileName);
  for (const std::string& name : reader.datasets()) {
    const H5TensorReader::Storage st = reader.storage(name);
    std::vector<Claim> mine;
    if (auto it = claims.find(name); it != claims.end()) {
      mine = std::move(it->second);
      claims.erase(it);
    }
    const std::string ds = "dataset '" + name + "'";
    if (st.elements == 0 && mine.empty()) continue;
    if (!st.contiguous || st.offset < 0) {
      problems.push_back(where + ds + " is not one contiguous, allocated block of the file "
                         "(chunked, compact or external storage): nupipe writes every dataset "
                         "contiguous, so its bytes cannot be matched with the manifest");
      continue;
    }
    const int64_t extent = st.elements * st.element_bytes;
    if (st.bytes != extent) {
      problems.push_back(where + ds + " has " + std::to_string(st.elements) + " elements of " +
                         std::to_string(st.element_bytes) + " bytes, but HDF5 stores " +
                         std::to_string(st.bytes) + " bytes for it");
      continue;
    }
    const std::string stored = ds + " is stored at " + byte_span(st.offset, extent) +
                               " of the file";
    if (mine.empty()) {
      problems.push_back(where + stored + ", but no region of the manifest is named after it" +
                         kNotThisFile);
      continue;
    }
    std::sort(mine.begin(), mine.end(),
              [](const Claim& a, const Claim& b) { return a.begin < b.begin; });
    int64_t next = 0;
    bool agree = true;
    for (const Claim& c : mine) {
      const Region& r = *c.region;
      if (c.begin != next || c.end > st.elements) {
        problems.push_back(where + stored + " (" + std::to_string(st.elements) +
                           " elements), but the manifest's regions of it " +
                           (c.end > st.elements ? "go past its end"
                            : c.begin < next    ? "overlap"
                                                : "leave a gap") +
                           " at '" + r.what + "'" + kNotThisFile);
        agree = false;
        break;
      }
      const int64_t offset = st.offset + c.begin * st.element_bytes;
      const int64_t bytes = (c.end - c.begin) * st.element_bytes;
      if (r.offset != offset || r.bytes != bytes) {
        const bool whole = c.begin == 0 && c.end == st.elements;
        problems.push_back(where + stored +
                           (whole ? std::string()
                                  : ", so its elements [" + std::to_string(c.begin) + ", " +
                                        std::to_string(c.end) + ") are at " +
                                        byte_span(offset, bytes)) +
                           ", but the manifest's region '" + r.what + "' is at " +
                           byte_span(r.offset, r.bytes) + kNotThisFile);
        agree = false;
        break;
      }
      next = c.end;
    }
    if (agree && next != st.elements) {
      problems.push_back(where + stored + ", but the manifest's regions of it end at element " +
                         std::to_string(next) + " of " + std::to_string(st.elements) +
                         kNotThisFile);
    }
  }
  for (const auto& [name, left] : claims) {
    problems.push_back(where + "the manifest's region '" + left.front().region->what +
                       "' names dataset '" + name + "', which " + kStateFileName +
                       " does not hold" + kNotThisFile);
  }
  return problems;
}

}  // namespace nupipe::checkpoint
