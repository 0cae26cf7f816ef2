// manifest.cpp: manifest.json through nlohmann-json, XXH3 hashing of file ranges, and the
// verification of a checkpoint's bytes before any parser reads them.
#include "checkpoint/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <new>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::checkpoint {

namespace {

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Streams [offset, offset + bytes) of an open file through XXH3; false on a short read.
bool hash_range(int fd, int64_t offset, int64_t bytes, uint64_t* out) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buf(static_cast<size_t>(std::min<int64_t>(bytes, 8 << 20)) + 1);
  bool ok = true;
  while (bytes > 0 && ok) {
    const int64_t n = std::min<int64_t>(bytes, static_cast<int64_t>(buf.size()));
    ok = runtime::read_all_at(fd, buf.data(), static_cast<size_t>(n), offset);
    if (ok) XXH3_64bits_update(state, buf.data(), static_cast<size_t>(n));
    offset += n;
    bytes -= n;
  }
  *out = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return ok;
}

}  // namespace

uint64_t xxh3(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

struct Xxh3Stream::State {
  XXH3_state_t* s;
};

Xxh3Stream::Xxh3Stream() : state_(new State{XXH3_createState()}) {
  if (state_->s == nullptr) {
    delete state_;
    throw std::bad_alloc();
  }
  reset();
}

Xxh3Stream::~Xxh3Stream() {
  XXH3_freeState(state_->s);
  delete state_;
}

void Xxh3Stream::reset() { XXH3_64bits_reset(state_->s); }

void Xxh3Stream::update(const void* data, size_t bytes) {
  XXH3_64bits_update(state_->s, data, bytes);
}

uint64_t Xxh3Stream::digest() const { return XXH3_64bits_digest(state_->s); }

std::string Manifest::to_json() const {
  nlohmann::json j;
  j["format"] = "nupipe-checkpoint";
  j["format_version"] = format_version;
  j["step"] = step;
  j["nupipe_version"] = nupipe_version;
  j["layout"] = layout;
  j["files"] = nlohmann::json::array();
  for (const ManifestFile& f : files) {
    nlohmann::json regions = nlohmann::json::array();
    for (const Region& r : f.regions) {
      regions.push_back({{"what", r.what}, {"offset", r.offset}, {"bytes", r.bytes},
                         {"xxh3", hex(r.xxh3)}});
    }
    j["files"].push_back({{"name", f.name}, {"bytes", f.bytes}, {"regions", regions}});
  }
  return j.dump(1) + "\n";
}

Manifest Manifest::parse(const std::string& text, const std::string& source) {
  Manifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (j.value("format", std::string()) != "nupipe-checkpoint") {
      throw checkpoint_error(source + " is not a nupipe checkpoint manifest (no \"format\": "
                             "\"nupipe-checkpoint\")");
    }
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != kFormatVersion) {
      throw checkpoint_error(source + ": checkpoint format version " +
                                 std::to_string(m.format_version) + "; this nupipe reads " +
                                 std::to_string(kFormatVersion),
                             "resume it with the nupipe version that wrote it (" +
                                 j.value("nupipe_version", std::string("unknown")) + ")");
    }
    m.step = j.at("step").get<int64_t>();
    m.nupipe_version = j.at("nupipe_version").get<std::string>();
    m.layout = j.at("layout").get<std::string>();
    for (const auto& f : j.at("files")) {
      ManifestFile file{f.at("name").get<std::string>(), f.at("bytes").get<int64_t>(), {}};
      if (file.bytes < 0 || file.name.empty() || file.name.find('/') != std::string::npos) {
        throw checkpoint_error(source + ": bad file entry '" + file.name + "'",
                               "the checkpoint is damaged; use an older one");
      }
      for (const auto& r : f.at("regions")) {
        Region region{r.at("what").get<std::string>(), r.at("offset").get<int64_t>(),
                      r.at("bytes").get<int64_t>(), 0};
        region.xxh3 = std::stoull(r.at("xxh3").get<std::string>(), nullptr, 16);
        if (region.offset < 0 || region.bytes < 0) {
          throw checkpoint_error(source + ": region '" + region.what + "' has a negative " +
                                     (region.offset < 0 ? "offset" : "size"),
                                 "the checkpoint is damaged; use an older one");
        }
        file.regions.push_back(std::move(region));
      }
      m.files.push_back(std::move(file));
    }
  } catch (const nlohmann::json::exception& e) {
    throw checkpoint_error(source + " is not a valid manifest: " + e.what(),
                           "the checkpoint is damaged; use an older one (nupipe ckpt verify)");
  } catch (const std::logic_error& e) {  // stoull
    throw checkpoint_error(source + " has a malformed checksum: " + e.what(),
                           "the checkpoint is damaged; use an older one (nupipe ckpt verify)");
  }
  return m;
}

Manifest Manifest::read(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw checkpoint_error(dir + " has no " + kManifestName +
                               ": it was never committed (its save did not finish)",
                           "use an older checkpoint; a directory without a manifest is never "
                           "loaded");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

std::vector<Region> hash_gaps(const std::string& path, int64_t file_bytes,
                              const std::vector<Region>& regions) {
  std::vector<Region> sorted = regions;
  std::sort(sorted.begin(), sorted.end(),
            [](const Region& a, const Region& b) { return a.offset < b.offset; });
  runtime::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    throw checkpoint_error("cannot open " + path + " to checksum it: " +
                           runtime::errno_text(errno));
  }
  std::vector<Region> gaps;
  int64_t at = 0;
  auto gap = [&](int64_t end) {
    if (end <= at) return;
    Region g{"hdf5 metadata", at, end - at, 0};
    if (!hash_range(fd.get(), g.offset, g.bytes, &g.xxh3)) {
      throw checkpoint_error("cannot read " + path + " to checksum it: " +
                             runtime::errno_text(errno));
    }
    gaps.push_back(g);
  };
  for (const Region& r : sorted) {
    if (r.offset < at) {
      throw checkpoint_error("internal: overlapping regions in " + path + " at byte " +
                             std::to_string(r.offset) + " (" + r.what + ")");
    }
    gap(r.offset);
    at = r.offset + r.bytes;
  }
  gap(file_bytes);
  return gaps;
}

std::vector<std::string> verify_files(const std::string& dir, const Manifest& manifest,
                                      int part, int parts) {
  std::vector<std::string> problems;
  if (manifest.files.empty()) problems.push_back(std::string(kManifestName) + " lists no files");
  size_t index = 0;
  for (const ManifestFile& f : manifest.files) {
    const std::string path = dir + "/" + f.name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      problems.push_back(f.name + ": missing (" + runtime::errno_text(errno) + ")");
      continue;
    }
    if (st.st_size != f.bytes) {
      problems.push_back(f.name + ": " + std::to_string(st.st_size) + " bytes, the manifest says " +
                         std::to_string(f.bytes) +
                         (st.st_size < f.bytes ? " (truncated)" : " (extended)"));
      continue;
    }
    int64_t at = 0;
    bool tiled = true;
    for (const Region& r : f.regions) {
      if (r.offset != at || r.bytes < 0) {
        problems.push_back(f.name + ": the manifest's regions do not cover the file at byte " +
                           std::to_string(at));
        tiled = false;
        break;
      }
      at += r.bytes;
    }
    if (tiled && at != f.bytes) {
      problems.push_back(f.name + ": the manifest's regions end at byte " + std::to_string(at) +
                         " of " + std::to_string(f.bytes));
    }
    runtime::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      problems.push_back(f.name + ": cannot open (" + runtime::errno_text(errno) + ")");
      continue;
    }
    for (const Region& r : f.regions) {
      if (static_cast<int>(index++ % static_cast<size_t>(parts)) != part) continue;
      uint64_t h = 0;
      if (!hash_range(fd.get(), r.offset, r.bytes, &h)) {
        problems.push_back(f.name + ": " + r.what + " at byte " + std::to_string(r.offset) +
                           ": unreadable");
      } else if (h != r.xxh3) {
        problems.push_back(f.name + ": " + r.what + " at byte " + std::to_string(r.offset) +
                           ": checksum mismatch (xxh3 " + hex(h) + ", manifest " + hex(r.xxh3) +
                           ")");
      }
    }
  }
  return problems;
}

}  // namespace nupipe::checkpoint
