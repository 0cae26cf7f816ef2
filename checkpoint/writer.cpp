// writer.cpp: the collective save: datasets created together, pieces staged to the host and
// written and hashed a chunk at a time, HDF5 metadata hashed by rank 0, manifest last, rename.
#include "checkpoint/writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "checkpoint/h5_tensors.h"
#include "checkpoint/manifest.h"
#include "checkpoint/snapshot.h"
#include "parallel/comm/consensus.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/posix_file.h"
#include "runtime/backend.h"

namespace nupipe::checkpoint {

namespace fs = std::filesystem;

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string model_dataset(const std::string& t) { return "model/" + t; }
std::string exp_avg_dataset(const std::string& t) { return "optim/exp_avg/" + t; }
std::string exp_avg_sq_dataset(const std::string& t) { return "optim/exp_avg_sq/" + t; }

namespace {

void write_attributes(H5TensorWriter& w, const CheckpointInfo& info) {
  const TrainingState& s = info.state;
  w.attr("format", "nupipe-checkpoint");
  w.attr("format_version", kFormatVersion);
  w.attr("nupipe_version", info.nupipe_version);
  w.attr("step", s.step);
  w.attr("optimizer_steps", s.optimizer_steps);
  w.attr("train.seed", static_cast<int64_t>(s.seed));
  w.attr("data.name", s.data_name);
  w.attr("data.tokens", s.data_tokens);
  w.attr("tokens_seen", s.tokens_seen);
  for (const runtime::ModelKey& k : runtime::model_keys()) {  // the must-match model keys
    const std::string v = k.get(info.model);
    if (k.kind == runtime::ModelKey::Kind::text) w.attr(k.name, v);
    else if (k.kind == runtime::ModelKey::Kind::boolean) w.attr(k.name, v == "true" ? 1 : 0);
    else w.attr(k.name, static_cast<int64_t>(std::stoll(v)));
  }
  w.attr("layout.pipeline", info.layout.pipeline);
  w.attr("layout.data", info.layout.data);
  w.attr("layout.zero", info.layout.zero);
  w.attr("layout.stage_layers", info.layout.stage_layers);
  w.attr("config", info.config_toml);
}

std::string range_name(const std::string& name, int64_t begin, int64_t n) {
  return name + " [" + std::to_string(begin) + ", " + std::to_string(begin + n) + ")";
}

SaveResult save_steps(const std::string& root, const CheckpointInfo& info,
                      const std::vector<runtime::TensorSpec>& global_specs, const RankPart& part,
                      parallel::MpiCommunicator& world, const std::function<void(const char*)>& phase,
                      std::chrono::steady_clock::time_point t0) {
  const int rank = world.rank();
  const std::string name = step_dir_name(info.state.step);
  const std::string final_dir = root + "/" + name, tmp_dir = final_dir + ".tmp";
  const std::string file = tmp_dir + "/" + kStateFileName;
  auto fail_hint = [] {
    return std::string("check free space and permissions of checkpoint.dir; the previous "
                       "checkpoint is intact");
  };

  // 1. The temporary directory (rank 0), a stale one of the same step removed first.
  phase("checkpoint: preparing the directory");
  parallel::agree(world, [&] {
    if (rank != 0) return;
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) throw checkpoint_error("cannot create checkpoint.dir " + root + ": " + ec.message(),
                                   fail_hint());
    if (fs::exists(final_dir, ec)) {
      throw checkpoint_error(final_dir + " already exists", "a checkpoint of this step was "
                             "committed before; nupipe never overwrites one");
    }
    fs::remove_all(tmp_dir, ec);
    if (!fs::create_directory(tmp_dir, ec) || ec) {
      throw checkpoint_error("cannot create " + tmp_dir + ": " + ec.message(), fail_hint());
    }
  });

  // 2-4. The shared file: datasets and attributes together, pieces alone, close together.
  std::vector<Region> mine;
  {
    std::optional<H5TensorWriter> w;
    std::map<std::string, int64_t> offsets;
    phase("checkpoint: creating datasets");
    parallel::agree(world, [&] {
      w.emplace(file, world.handle());
      for (const runtime::TensorSpec& s : global_specs) {
        if (s.tied_copy) continue;
        for (const std::string& d : {model_dataset(s.name), exp_avg_dataset(s.name),
                                     exp_avg_sq_dataset(s.name)}) {
          offsets[d] = w->create(d, s.shape);
        }
      }
      write_attributes(*w, info);
    });
    phase("checkpoint: writing tensors");
    parallel::agree(world, [&] {
      // Each piece a chunk at a time: to the host, into the file, into the piece's checksum.
      // From a snapshot, the same chunks straight from its host memory.
      Xxh3Stream hash;
      const auto chunk = static_cast<int64_t>(std::max<size_t>(1, part.staging_bytes / sizeof(float)));
      auto sink = [&](const SavePiece& p) {
        return [&](const float* host, int64_t first, int64_t count) {
          w->write_range(p.name, p.begin + first, host, count);
          hash.update(host, static_cast<size_t>(count) * sizeof(float));
        };
      };
      std::optional<HostStaging> staging;
      if (!part.snapshot) staging.emplace(part.store->backend(), part.staging_bytes);
      for (const SavePiece& p : part.snapshot ? part.snapshot->pieces() : rank_pieces(part)) {
        hash.reset();
        if (staging) {
          staging->to_host(p.data, p.n, sink(p));
        } else {
          for (int64_t first = 0; first < p.n; first += chunk) {
            sink(p)(p.data + first, first, std::min(chunk, p.n - first));
          }
        }
        const int64_t bytes = p.n * static_cast<int64_t>(sizeof(float));
        mine.push_back({range_name(p.name, p.begin, p.n),
                        offsets.at(p.name) + p.begin * static_cast<int64_t>(sizeof(float)), bytes,
                        hash.digest()});
        phase("checkpoint: writing tensors");
      }
    });
    phase("checkpoint: flushing");
    parallel::agree(world, [&] { w->close(); });
  }

  // 5. Every rank's regions to rank 0, which hashes HDF5's metadata between them.
  phase("checkpoint: gathering checksums");
  nlohmann::json regions = nlohmann::json::array();
  for (const Region& r : mine) regions.push_back({r.what, r.offset, r.bytes, r.xxh3});
  const std::vector<std::string> all = world.gather_text(regions.dump());

  // 6. Rank 0 commits: manifest, fsync, rename, fsync of the parent.
  SaveResult result;
  result.dir = final_dir;
  phase("checkpoint: committing");
  parallel::agree(world, [&] {
    if (rank != 0) return;
    ManifestFile mf;
    mf.name = kStateFileName;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      throw checkpoint_error("cannot stat " + file + ": " + runtime::errno_text(errno),
                             fail_hint());
    }
    mf.bytes = st.st_size;
    for (const std::string& text : all) {
      for (const auto& r : nlohmann::json::parse(text)) {
        mf.regions.push_back({r[0].get<std::string>(), r[1].get<int64_t>(), r[2].get<int64_t>(),
                              r[3].get<uint64_t>()});
      }
    }
    // Every element of every dataset was written by exactly one rank: the pieces' bytes add up
    // to the datasets' (they never overlap), so no gap labelled metadata hides unwritten data.
    int64_t data_bytes = 0, piece_bytes = 0;
    for (const runtime::TensorSpec& t : global_specs) {
      if (!t.tied_copy) data_bytes += 3 * t.numel() * static_cast<int64_t>(sizeof(float));
    }
    for (const Region& r : mf.regions) piece_bytes += r.bytes;
    NUPIPE_CHECK(piece_bytes == data_bytes,
                 "the ranks wrote " + std::to_string(piece_bytes) + " bytes of tensors, the "
                     "datasets hold " + std::to_string(data_bytes));
    for (Region& g : hash_gaps(file, mf.bytes, mf.regions)) mf.regions.push_back(std::move(g));
    std::sort(mf.regions.begin(), mf.regions.end(),
              [](const Region& a, const Region& b) { return a.offset < b.offset; });
    Manifest m;
    m.step = info.state.step;
    m.nupipe_version = info.nupipe_version;
    m.layout = info.layout.describe();
    m.files.push_back(std::move(mf));
    if (int err = runtime::fsync_path(file)) {
      throw checkpoint_error("fsync of " + file + " failed: " + runtime::errno_text(err),
                             fail_hint());
    }
    std::string step;
    if (int err = runtime::write_file_atomic(tmp_dir + "/" + kManifestName, m.to_json(), &step)) {
      throw checkpoint_error("writing the manifest failed: " + step + ": " +
                                 runtime::errno_text(err),
                             fail_hint());
    }
    if (int err = runtime::fsync_path(tmp_dir, true)) {
      throw checkpoint_error("fsync of " + tmp_dir + " failed: " + runtime::errno_text(err),
                             fail_hint());
    }
    if (::rename(tmp_dir.c_str(), final_dir.c_str()) != 0) {
      throw checkpoint_error("renaming " + tmp_dir + " to " + final_dir + " failed: " +
                                 runtime::errno_text(errno),
                             fail_hint());
    }
    runtime::fsync_path(root, true);  // the rename is durable with the parent directory
    result.bytes = m.files.front().bytes;
  });
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}
}  // namespace

SaveResult save_checkpoint(const std::string& root, const CheckpointInfo& info,
                           const std::vector<runtime::TensorSpec>& global_specs,
                           const RankPart& part, parallel::MpiCommunicator& world) {
  const auto t0 = std::chrono::steady_clock::now();
  // Each phase is a wait on the other ranks (parallel HDF5's collectives included).
  std::optional<parallel::Watchdog::Scope> watch;
  auto phase = [&](const char* what) {
    watch.reset();
    watch.emplace(world.watchdog(), what, &world.name(), &world.world_ranks());
  };
  const int rank = world.rank();
  try {
    return save_steps(root, info, global_specs, part, world, phase, t0);
  } catch (const Error&) {
    watch.reset();
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(root + "/" + step_dir_name(info.state.step) + ".tmp", ec);
    }
    throw;
  }
}


}  // namespace nupipe::checkpoint
