// test_checkpoint_io.cpp: checkpoint I/O on every rank of the world. A device whose memory is
// not host-readable (every byte stored XOR-scrambled; only the backend's copy_to_host /
// copy_from_host see the values) saves, verifies and resumes bitwise, in bounded chunks, the
// file equal to the plain cpu backend's; and a manifest whose regions no longer say where
// state.h5 keeps a dataset, its checksums recomputed so that the bytes all verify, is refused
// with the same verdict on every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "checkpoint/h5_tensors.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/snapshot.h"
#include "checkpoint/writer.h"
#include "optim/zero.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/stage_model.h"

namespace nupipe::checkpoint {
namespace {

namespace fs = std::filesystem;
using runtime::DType;

// Device memory holds value ^ kKey in every byte; fill_zero stores the key (a scrambled zero),
// so every path that goes through the backend sees consistent values and any other read of
// device memory sees garbage. Counts the copies and their largest size.
class ScrambledDevice final : public runtime::CpuBackend {
 public:
  static constexpr unsigned char kKey = 0xA5;
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    scramble(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    scramble(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, kKey, bytes); }
  void reset_counts() { copies = 0, largest_copy = 0; }
  int64_t copies = 0;
  size_t largest_copy = 0;

 private:
  void scramble(void* dst, const void* src, size_t bytes) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < bytes; ++i) d[i] = s[i] ^ kKey;
    ++copies;
    largest_copy = std::max(largest_copy, bytes);
  }
};

// 3 heads of 8, vocab 37, 2 blocks: no tensor or shard is a multiple of the small chunk below,
// and the flat buffer (tied table) does not divide 4, so the last ZeRO shard ends in padding.
runtime::ModelConfig model_config() {
  runtime::ModelConfig c;
  c.n_layer = 2;
  c.d_model = 24;
  c.n_head = 3;
  c.vocab_size = 37;
  c.seq_len = 8;
  c.tie_embeddings = true;
  return c;
}

// Distinct, exactly representable-or-not fp32 values for flat element i of state k (0: the
// weights, 1: exp_avg, 2: exp_avg_sq), spread over many exponents and mantissas.
float value(int64_t i, int k) {
  uint64_t x = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k + 1);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  const float mantissa = static_cast<float>(x & 0xFFFFFF) / static_cast<float>(1 << 24);
  const int exponent = static_cast<int>((x >> 24) % 17) - 12;
  return (k == 2 ? 1.0f : ((x >> 40) & 1 ? 1.0f : -1.0f)) * std::ldexp(0.5f + mantissa, exponent);
}

std::vector<float> values(int64_t begin, int64_t end, int k, int64_t numel) {
  std::vector<float> out(static_cast<size_t>(end - begin), 0.0f);
  for (int64_t i = begin; i < std::min(end, numel); ++i) out[static_cast<size_t>(i - begin)] = value(i, k);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  // memcmp of empty vectors would get null pointers (undefined even for 0 bytes)
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

size_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

// One rank's stage (the whole model: pipeline 1 x data N) on `backend`, its optimizer on the
// ZeRO-1 shard (zero = 1) or everything (zero = 0).
struct RankState {
  runtime::ParamStore store;
  optim::AdamW adamw;
  RankState(runtime::Backend& backend, DType dtype, int zero, int rank, int ranks)
      : store(backend,
              runtime::stage_specs(model_config(), runtime::StageSlice::whole(model_config())),
              zero ? ranks : 1, dtype),
        adamw(store, optim::AdamWOptions{}, range(zero, rank, ranks).begin,
              range(zero, rank, ranks).end) {}
  optim::Shard range(int zero, int rank, int ranks) const {
    return zero ? optim::shard_of(store.numel(), ranks, rank) : optim::Shard{0, store.numel()};
  }
  // The test's values, through the backend's copies only.
  void fill() {
    const int64_t n = store.numel();
    runtime::Tensor params = store.flat_params();
    runtime::from_host(params, values(0, store.padded_numel(), 0, n));
    runtime::from_host(adamw.exp_avg(), values(adamw.begin(), adamw.end(), 1, n));
    runtime::from_host(adamw.exp_avg_sq(), values(adamw.begin(), adamw.end(), 2, n));
    if (adamw.owns_master()) {
      runtime::from_host(adamw.master(), values(adamw.begin(), adamw.end(), 0, n));
    }
    adamw.set_steps_taken(7);
  }
  void spoil() {  // a state that is nothing like the saved one, padding included
    runtime::Tensor params = store.flat_params();
    runtime::from_host(params, std::vector<float>(store.padded_numel(), 3.0f));
    for (runtime::Tensor* t : {&adamw.exp_avg(), &adamw.exp_avg_sq(), &adamw.master()}) {
      runtime::from_host(*t, std::vector<float>(t->numel(), -5.0f));
    }
  }
};

CheckpointInfo info_for(int ranks, int zero) {
  CheckpointInfo info;
  info.state.step = 3;
  info.state.optimizer_steps = 7;
  info.state.seed = 11;
  info.state.data_name = "test";
  info.state.data_tokens = 1000;
  info.state.tokens_seen = 48;
  info.model = model_config();
  info.layout = {1, ranks, zero, "[2]"};
  info.config_toml = "# test\n";
  info.nupipe_version = "test";
  return info;
}

// A scratch directory shared by the ranks: rank 0 names it, every rank gets the name.
struct SharedDir {
  std::string path;
  parallel::MpiCommunicator& world;
  explicit SharedDir(parallel::MpiCommunicator& w) : world(w) {
    std::string name;
    if (world.rank() == 0) {
      name = (fs::temp_directory_path() /
              ("nupipe_ckio_" + std::to_string(std::random_device{}()))).string();
      fs::create_directories(name);
    }
    path = world.broadcast_text(name, 0);
  }
  ~SharedDir() {
    world.barrier();
    if (world.rank() == 0) fs::remove_all(path);
  }
};

SaveResult save(const std::string& root, RankState& s, parallel::MpiCommunicator& world,
                int zero, size_t staging_bytes) {
  RankPart part{&s.store, &s.adamw, world.rank(), world.size(), staging_bytes};
  return save_checkpoint(root, info_for(world.size(), zero), runtime::stage_specs(model_config(),
                         runtime::StageSlice::whole(model_config())), part, world);
}

// Every rank's lines, joined, to rank 0, which compares them with its own.
void expect_same_on_every_rank(const std::vector<std::string>& mine,
                               parallel::MpiCommunicator& world) {
  std::string text;
  for (const std::string& p : mine) text += p + "\n";
  const std::vector<std::string> all = world.gather_text(text);
  if (world.rank() != 0) return;
  for (size_t r = 1; r < all.size(); ++r) EXPECT_EQ(all[r], all[0]) << "rank " << r;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

constexpr size_t kSmallChunk = 1000;  // 250 floats: every piece crosses chunk boundaries

class ScrambledDeviceCheckpoint : public testing::TestWithParam<DType> {};

TEST_P(ScrambledDeviceCheckpoint, SavesVerifiesAndResumesBitwise) {
  const DType dtype = GetParam();
  parallel::MpiCommunicator world;
  const int rank = world.rank(), ranks = world.size();
  SharedDir tmp(world);
  ScrambledDevice dev;
  runtime::CpuBackend cpu;
  RankState scrambled(dev, dtype, 1, rank, ranks), plain(cpu, dtype, 1, rank, ranks);
  scrambled.fill();
  plain.fill();
  // The device really is unreadable from the host: its raw bytes are not the values.
  const std::vector<float> want_m = values(scrambled.adamw.begin(), scrambled.adamw.end(), 1,
                                           scrambled.store.numel());
  std::vector<float> raw(want_m.size());
  std::memcpy(raw.data(), scrambled.adamw.exp_avg().f32(), raw.size() * sizeof(float));
  EXPECT_EQ(differing(raw, want_m), raw.size());

  dev.reset_counts();
  const SaveResult a = save(tmp.path + "/scrambled", scrambled, world, 1, kSmallChunk);
  EXPECT_GT(dev.copies, 0);
  EXPECT_LE(dev.largest_copy, kSmallChunk);  // staged a bounded chunk at a time
  const SaveResult b = save(tmp.path + "/plain", plain, world, 1, kStagingBytes);
  EXPECT_TRUE(verify_checkpoint(a.dir, world).empty());
  EXPECT_TRUE(verify_checkpoint(b.dir, world).empty());

  // The file holds the values (the fp32 master under bf16), dataset by dataset, and its data
  // regions are the cpu backend's, checksum for checksum.
  if (rank == 0) {
    H5TensorReader r(a.dir + "/" + kStateFileName);
    const runtime::ParamStore& store = scrambled.store;
    for (const runtime::TensorSpec& s : store.specs()) {
      if (s.tied_copy) continue;
      for (int k = 0; k < 3; ++k) {
        const std::string name = k == 0 ? model_dataset(s.name)
                                 : k == 1 ? exp_avg_dataset(s.name)
                                          : exp_avg_sq_dataset(s.name);
        const std::vector<float> want = values(s.offset, s.offset + s.numel(), k, store.numel());
        EXPECT_EQ(differing(r.read_f32(name, s.shape), want), 0u) << name;
      }
    }
    const Manifest ma = Manifest::read(a.dir), mb = Manifest::read(b.dir);
    ASSERT_EQ(ma.files.size(), 1u);
    ASSERT_EQ(mb.files.size(), 1u);
    std::vector<std::tuple<std::string, int64_t, int64_t, uint64_t>> da, db;
    for (const Region& x : ma.files[0].regions) {
      if (x.what != "hdf5 metadata") da.emplace_back(x.what, x.offset, x.bytes, x.xxh3);
    }
    for (const Region& x : mb.files[0].regions) {
      if (x.what != "hdf5 metadata") db.emplace_back(x.what, x.offset, x.bytes, x.xxh3);
    }
    EXPECT_FALSE(da.empty());
    EXPECT_EQ(da, db);
  }

  // Resumed onto scrambled devices, in the same layout (ZeRO-1 shards: the padding comes back
  // zero) and replicated (zero 0), from a state that is nothing like the saved one.
  for (int zero : {1, 0}) {
    ScrambledDevice dev2;
    RankState back(dev2, dtype, zero, rank, ranks);
    back.spoil();
    dev2.reset_counts();
    load_rank_part(a.dir, back.store, back.adamw, 7, kSmallChunk);
    EXPECT_LE(dev2.largest_copy, kSmallChunk);
    EXPECT_EQ(back.adamw.steps_taken(), 7);
    const int64_t n = back.store.numel(), lo = back.adamw.begin(), hi = back.adamw.end();
    std::vector<float> params = values(0, back.store.padded_numel(), 0, n);
    if (dtype == DType::bf16) {
      for (float& v : params) v = runtime::round_to_bf16(v);
    }
    params.resize(static_cast<size_t>(n));  // the padding of the params is never loaded
    std::vector<float> got = runtime::to_host(back.store.flat_params());
    got.resize(static_cast<size_t>(n));
    EXPECT_EQ(differing(got, params), 0u) << "zero " << zero;
    EXPECT_TRUE(same_bits(runtime::to_host(back.adamw.exp_avg()), values(lo, hi, 1, n)));
    EXPECT_TRUE(same_bits(runtime::to_host(back.adamw.exp_avg_sq()), values(lo, hi, 2, n)));
    if (back.adamw.owns_master()) {
      EXPECT_TRUE(same_bits(runtime::to_host(back.adamw.master()), values(lo, hi, 0, n)));
    }
  }
}

// checkpoint.async's snapshot: taken from a device the host cannot read (by its copies only),
// then the device's state changed, as training goes on changing it; the save from the
// snapshot alone holds the values at the snapshot, checksum for checksum the synchronous
// save's, and the snapshot's host memory is exactly its prediction.
TEST(CheckpointSnapshot, ASaveFromTheSnapshotOfAScrambledDeviceEqualsTheSynchronousOne) {
  parallel::MpiCommunicator world;
  const int rank = world.rank(), ranks = world.size();
  SharedDir tmp(world);
  ScrambledDevice dev;
  RankState live(dev, DType::bf16, 1, rank, ranks);
  live.fill();
  const SaveResult sync = save(tmp.path + "/sync", live, world, 1, kStagingBytes);
  runtime::MemoryAccounting host;
  SaveResult async;
  {
    Snapshot snap(host);
    RankPart part{&live.store, &live.adamw, rank, ranks, kSmallChunk};
    snap.take(part);
    EXPECT_EQ(snap.bytes(), snapshot_bytes(live.store.specs(), live.store.numel(), rank, ranks));
    EXPECT_EQ(host.peak(runtime::MemTag::checkpoint_snapshot), snap.bytes());
    live.spoil();  // training goes on: the snapshot alone is written
    part.store = nullptr;
    part.adamw = nullptr;
    part.snapshot = &snap;
    dev.reset_counts();
    async = save_checkpoint(tmp.path + "/async", info_for(ranks, 1),
                            runtime::stage_specs(model_config(),
                                               runtime::StageSlice::whole(model_config())),
                            part, world);
    EXPECT_EQ(dev.copies, 0) << "a save from a snapshot reads no device memory";
  }
  EXPECT_EQ(host.current(runtime::MemTag::checkpoint_snapshot), 0);
  EXPECT_TRUE(verify_checkpoint(async.dir, world).empty());
  if (rank == 0) {
    const Manifest ma = Manifest::read(sync.dir), mb = Manifest::read(async.dir);
    std::vector<std::tuple<std::string, int64_t, int64_t, uint64_t>> da, db;
    for (const Region& x : ma.files[0].regions) {
      if (x.what != "hdf5 metadata") da.emplace_back(x.what, x.offset, x.bytes, x.xxh3);
    }
    for (const Region& x : mb.files[0].regions) {
      if (x.what != "hdf5 metadata") db.emplace_back(x.what, x.offset, x.bytes, x.xxh3);
    }
    EXPECT_FALSE(da.empty());
    EXPECT_EQ(da, db);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, ScrambledDeviceCheckpoint,
                         testing::Values(DType::f32, DType::bf16),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(runtime::dtype_name(p.param));
                         });

// A manifest edited so that every checksum still holds (the changed regions hashed again from
// the file), but its regions no longer say where the datasets are: only the comparison of each
// dataset's offset and extent with the regions named after it can see it.
TEST(CheckpointRegions, RegionsThatMisplaceADatasetAreRefusedOnEveryRank) {
  parallel::MpiCommunicator world;
  SharedDir tmp(world);
  runtime::CpuBackend cpu;
  RankState s(cpu, DType::f32, 1, world.rank(), world.size());
  s.fill();
  const std::string dir = save(tmp.path, s, world, 1, kStagingBytes).dir;
  const std::string manifest_path = dir + "/" + kManifestName;
  const Manifest good = Manifest::read(dir);
  ASSERT_TRUE(verify_checkpoint(dir, world).empty());
  const std::string bytes = file_bytes(dir + "/" + kStateFileName);
  auto rehash = [&](Region& r) {
    r.xxh3 = xxh3(bytes.data() + r.offset, static_cast<size_t>(r.bytes));
  };
  // The first data region that follows a metadata region.
  const std::vector<Region>& regions = good.files[0].regions;
  size_t first = 1;
  while (first < regions.size() &&
         !(regions[first].what != "hdf5 metadata" && regions[first - 1].what == "hdf5 metadata")) {
    ++first;
  }
  ASSERT_LT(first, regions.size());
  const Region target = regions[first];
  const std::string dataset = target.what.substr(0, target.what.rfind(" ["));
  const std::string stored_at = "dataset '" + dataset + "' is stored at bytes [" +
                                std::to_string(target.offset) + ", ";

  struct Mutation {
    const char* what;
    std::function<void(std::vector<Region>&)> edit;
    std::vector<std::string> wanted;  // in the problem lines
  };
  const std::vector<Mutation> mutations{
      {"a data region shifted by 4 bytes into the metadata before it",
       [&](std::vector<Region>& r) {
         r[first - 1].bytes += 4;
         r[first].offset += 4;
         r[first].bytes -= 4;
         rehash(r[first - 1]);
         rehash(r[first]);
       },
       {stored_at, "but the manifest's region '" + target.what + "' is at bytes [" +
                       std::to_string(target.offset + 4) + ", " +
                       std::to_string(target.offset + target.bytes) + ")",
        "the manifest does not describe this file"}},
      {"a data region's name given to another dataset",
       [&](std::vector<Region>& r) { r[first].what = "model/nothing [0, 1)"; },
       {"dataset '" + dataset + "' is stored at bytes [",
        "names dataset 'model/nothing', which state.h5 does not hold"}},
      {"two regions of equal size with their names swapped",
       [&](std::vector<Region>& r) {
         for (size_t j = first + 1; j < r.size(); ++j) {
           if (r[j].what != "hdf5 metadata" && r[j].bytes == r[first].bytes) {
             std::swap(r[j].what, r[first].what);
             return;
           }
         }
         ADD_FAILURE() << "no region the size of " << r[first].what;
       },
       {"is stored at bytes [" + std::to_string(target.offset) + ", "}},
  };
  for (const Mutation& m : mutations) {
    SCOPED_TRACE(m.what);
    Manifest edited = good;
    m.edit(edited.files[0].regions);
    // Every byte still verifies against the edited manifest.
    EXPECT_TRUE(verify_files(dir, edited).empty());
    world.barrier();
    if (world.rank() == 0) std::ofstream(manifest_path, std::ios::trunc) << edited.to_json();
    world.barrier();
    const std::vector<std::string> problems = verify_checkpoint(dir, world);
    expect_same_on_every_rank(problems, world);
    std::vector<std::string> alone = verify_checkpoint(dir);  // as `nupipe ckpt verify` does
    std::sort(alone.begin(), alone.end());
    EXPECT_EQ(alone, problems);
    std::string text;
    for (const std::string& p : problems) text += p + "\n";
    EXPECT_FALSE(problems.empty());
    for (const std::string& w : m.wanted) {
      EXPECT_NE(text.find(w), std::string::npos) << "wanted: " << w << "\nin:\n" << text;
    }
  }
  world.barrier();
  if (world.rank() == 0) std::ofstream(manifest_path, std::ios::trunc) << good.to_json();
  world.barrier();
  EXPECT_TRUE(verify_checkpoint(dir, world).empty());
}

}  // namespace
}  // namespace nupipe::checkpoint
