// test_checkpoint_format.cpp: the pieces of the checkpoint format on one process: flat-range
// hyperslab writes and reads, the manifest, byte-level verification, the catalog, retention
// and its milestones, paths that are not checkpoints, and the model keys a checkpoint must
// match.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "checkpoint/catalog.h"
#include "checkpoint/checkpoint_info.h"
#include "checkpoint/h5_tensors.h"
#include "checkpoint/manifest.h"
#include "runtime/error.h"

namespace fs = std::filesystem;
using namespace nupipe;
using namespace nupipe::checkpoint;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("nupipe_ckfmt_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

}  // namespace

// Any flat range of an N-d dataset, written in pieces by "ranks", reads back whole; and any
// flat range reads back alone.
TEST(CheckpointFormat, FlatRangesOfNdDatasetsRoundTrip) {
  TempDir tmp;
  const std::vector<std::vector<int64_t>> shapes{{37}, {5, 7}, {3, 4, 5}, {1, 1, 9}};
  std::mt19937 rng(3);
  std::vector<std::vector<float>> values;
  {
    H5TensorWriter w(tmp.file("r.h5"));
    for (size_t t = 0; t < shapes.size(); ++t) {
      int64_t n = 1;
      for (int64_t d : shapes[t]) n *= d;
      values.emplace_back(static_cast<size_t>(n));
      std::iota(values.back().begin(), values.back().end(), 100.0f * static_cast<float>(t));
      const std::string name = "g/t" + std::to_string(t);
      w.create(name, shapes[t]);
      // Cut [0, n) at random points; write the pieces in a shuffled order.
      std::vector<int64_t> cuts{0, n};
      for (int i = 0; i < 4; ++i) cuts.push_back(std::uniform_int_distribution<int64_t>(0, n)(rng));
      std::sort(cuts.begin(), cuts.end());
      std::vector<size_t> order(cuts.size() - 1);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i : order) {
        w.write_range(name, cuts[i], values.back().data() + cuts[i], cuts[i + 1] - cuts[i]);
      }
    }
    w.close();
  }
  H5TensorReader r(tmp.file("r.h5"));
  for (size_t t = 0; t < shapes.size(); ++t) {
    const std::string name = "g/t" + std::to_string(t);
    EXPECT_EQ(r.read_f32(name, shapes[t]), values[t]) << name;
    const int64_t n = static_cast<int64_t>(values[t].size());
    for (int trial = 0; trial < 20; ++trial) {
      int64_t a = std::uniform_int_distribution<int64_t>(0, n)(rng);
      int64_t b = std::uniform_int_distribution<int64_t>(0, n)(rng);
      if (a > b) std::swap(a, b);
      std::vector<float> got(static_cast<size_t>(b - a), -1.0f);
      r.read_range(name, a, got.data(), b - a);
      EXPECT_EQ(got, std::vector<float>(values[t].begin() + a, values[t].begin() + b))
          << name << " [" << a << ", " << b << ")";
    }
  }
  std::vector<float> out(4);
  EXPECT_THROW(r.read_range("g/t0", 35, out.data(), 4), Error);  // past the end
}

TEST(CheckpointFormat, ManifestRoundTripsAndRefusesGarbage) {
  Manifest m;
  m.step = 40;
  m.nupipe_version = "9.9";
  m.layout = "pipeline 2 x data 2, stage_layers [1, 3], zero 1";
  m.files.push_back({"state.h5", 10, {{"hdf5 metadata", 0, 4, 0xdeadbeefcafef00dull},
                                      {"model/x [0, 1)", 4, 6, 1}}});
  const Manifest back = Manifest::parse(m.to_json(), "m.json");
  EXPECT_EQ(back.step, 40);
  EXPECT_EQ(back.layout, m.layout);
  ASSERT_EQ(back.files.size(), 1u);
  ASSERT_EQ(back.files[0].regions.size(), 2u);
  EXPECT_EQ(back.files[0].regions[0].xxh3, 0xdeadbeefcafef00dull);
  EXPECT_EQ(back.files[0].regions[1].what, "model/x [0, 1)");
  for (const char* bad : {"", "{", "[]", "{\"format\": \"other\"}",
                          "{\"format\": \"nupipe-checkpoint\", \"format_version\": 1}"}) {
    try {
      Manifest::parse(bad, "m.json");
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::checkpoint);
      EXPECT_CONTAINS(e.what(), "m.json");
    }
  }
  std::string newer = m.to_json();
  newer.replace(newer.find("\"format_version\": 1"), 19, "\"format_version\": 2");
  try {
    Manifest::parse(newer, "m.json");
    ADD_FAILURE() << "a newer format was accepted";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "format version 2");
  }
}

// verify_files reads bytes only: a flipped byte names its region, a cut file says truncated,
// a missing manifest says never committed, regions that do not tile the file are refused.
TEST(CheckpointFormat, VerificationFindsAndNamesDamage) {
  TempDir tmp;
  std::string bytes(1000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  std::ofstream(tmp.file("state.h5"), std::ios::binary) << bytes;
  std::vector<Region> data{{"model/a [0, 100)", 100, 400, xxh3(bytes.data() + 100, 400)},
                           {"model/b [0, 50)", 700, 200, xxh3(bytes.data() + 700, 200)}};
  ManifestFile f{"state.h5", 1000, data};
  for (Region& g : hash_gaps(tmp.file("state.h5"), 1000, data)) f.regions.push_back(g);
  std::sort(f.regions.begin(), f.regions.end(),
            [](const Region& a, const Region& b) { return a.offset < b.offset; });
  ASSERT_EQ(f.regions.size(), 5u);  // gaps [0,100), [500,700), [900,1000)
  Manifest m;
  m.files.push_back(f);
  EXPECT_TRUE(verify_files(tmp.path.string(), m).empty());
  // Shared by 3 "ranks": together they check every region.
  size_t checked_problems = 0;
  for (int part = 0; part < 3; ++part) checked_problems += verify_files(tmp.path.string(), m, part, 3).size();
  EXPECT_EQ(checked_problems, 0u);

  {
    std::fstream io(tmp.file("state.h5"), std::ios::binary | std::ios::in | std::ios::out);
    io.seekp(750);
    io.put(static_cast<char>(bytes[750] ^ 1));
  }
  auto problems = verify_files(tmp.path.string(), m);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], "model/b [0, 50) at byte 700: checksum mismatch");
  {
    std::fstream io(tmp.file("state.h5"), std::ios::binary | std::ios::in | std::ios::out);
    io.seekp(50);
    io.put(static_cast<char>(bytes[50] ^ 1));  // in HDF5's metadata
  }
  problems = verify_files(tmp.path.string(), m);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_CONTAINS(problems[0], "hdf5 metadata at byte 0");

  fs::resize_file(tmp.file("state.h5"), 600);
  problems = verify_files(tmp.path.string(), m);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], "600 bytes, the manifest says 1000 (truncated)");

  Manifest holes = m;
  holes.files[0].regions.erase(holes.files[0].regions.begin() + 2);
  std::ofstream(tmp.file("state.h5"), std::ios::binary | std::ios::trunc) << bytes;
  problems = verify_files(tmp.path.string(), holes);
  ASSERT_FALSE(problems.empty());
  EXPECT_CONTAINS(problems[0], "do not cover the file");

  try {
    Manifest::read(tmp.path.string());
    ADD_FAILURE() << "no manifest.json, yet it was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::checkpoint);
    EXPECT_CONTAINS(e.what(), "never committed");
  }
}

// checkpoint.keep_every: milestones stay whatever keep says; the newest `keep` are counted
// over every checkpoint, milestones included.
TEST(CheckpointFormat, RetentionKeepsMilestones) {
  TempDir tmp;
  for (int step = 10; step <= 90; step += 10) {
    char name[32];
    std::snprintf(name, sizeof name, "step_%08d", step);
    fs::create_directories(tmp.path / name);
  }
  EXPECT_TRUE(is_milestone(40, 20));
  EXPECT_FALSE(is_milestone(50, 20));
  EXPECT_FALSE(is_milestone(40, 0));
  EXPECT_FALSE(is_milestone(0, 20));
  const std::vector<std::string> deleted = apply_retention(tmp.path.string(), 2, 30);
  std::vector<int64_t> left;
  for (const CheckpointEntry& e : list_checkpoints(tmp.path.string()).committed) {
    left.push_back(e.step);
  }
  EXPECT_EQ(left, (std::vector<int64_t>{90, 80, 60, 30}));
  EXPECT_EQ(deleted.size(), 5u);
  apply_retention(tmp.path.string(), 1, 0);  // keep_every = 0: milestones are ordinary again
  EXPECT_EQ(list_checkpoints(tmp.path.string()).committed.size(), 1u);
}

// A path that is not a checkpoint is named for what it is, from names alone.
TEST(CheckpointFormat, PathsThatAreNotCheckpoints) {
  TempDir tmp;
  const std::string ck = tmp.file("run/checkpoints");
  for (const char* d : {"step_00000008", "step_00000016", "step_00000024.tmp"}) {
    fs::create_directories(fs::path(ck) / d);
  }
  std::ofstream(ck + "/step_00000016/state.h5") << "x";
  EXPECT_EQ(check_checkpoint_path(ck + "/step_00000016").what, "");
  EXPECT_EQ(check_checkpoint_path(ck + "/step_00000016/").what, "");
  EXPECT_EQ(check_checkpoint_path(ck + "/step_00000024.tmp").what, "");  // "never committed"

  PathProblem p = check_checkpoint_path(ck + "/step_16");
  EXPECT_CONTAINS(p.what, ck + "/step_16 does not exist; the committed checkpoints in " + ck +
                              " are, newest first: " + ck + "/step_00000016, " + ck +
                              "/step_00000008");
  EXPECT_EQ(p.suggestion, ck + "/step_00000016");
  p = check_checkpoint_path(ck + "/step_00000032");
  EXPECT_CONTAINS(p.hint, "name one of them, e.g. the newest");
  EXPECT_EQ(p.suggestion, ck + "/step_00000016");
  p = check_checkpoint_path(tmp.file("elsewhere/step_00000016"));
  EXPECT_CONTAINS(p.what, "does not exist (nor does the directory " + tmp.file("elsewhere") + ")");
  EXPECT_EQ(p.suggestion, "");

  p = check_checkpoint_path(ck);
  EXPECT_CONTAINS(p.what, "is a directory of checkpoints, not one checkpoint; its newest "
                          "committed checkpoint is " + ck + "/step_00000016 (2 in all");
  p = check_checkpoint_path(ck + "/");
  EXPECT_EQ(p.suggestion, ck + "/step_00000016");
  p = check_checkpoint_path(tmp.file("run"));
  EXPECT_CONTAINS(p.what, "is a run directory, not one checkpoint");
  EXPECT_EQ(p.suggestion, ck + "/step_00000016");
  p = check_checkpoint_path(ck + "/step_00000016/state.h5");
  EXPECT_CONTAINS(p.what, "is a file of a checkpoint, not its directory");
  EXPECT_EQ(p.suggestion, ck + "/step_00000016");
  fs::create_directories(tmp.file("empty"));
  EXPECT_CONTAINS(check_checkpoint_path(tmp.file("empty")).what,
                  "is not a checkpoint: it holds neither manifest.json nor state.h5");
  // Only an unfinished save: said so.
  fs::remove_all(ck + "/step_00000008");
  fs::remove_all(ck + "/step_00000016");
  EXPECT_CONTAINS(check_checkpoint_path(ck).what, "holds no committed checkpoint, only 1 "
                                                  "unfinished save(s) (step_00000024.tmp)");
  try {
    require_checkpoint_path(ck, "nupipe ckpt verify {}");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::checkpoint);
  }
}

TEST(CheckpointFormat, CatalogAndRetentionNeverDropTheNewest) {
  TempDir tmp;
  for (const char* d : {"step_00000010", "step_00000030", "step_00000020", "step_00000040.tmp",
                        "step_00000020.damaged", "notes", "step_x"}) {
    fs::create_directories(tmp.path / d);
  }
  std::ofstream(tmp.file("step_00000050")) << "a file, not a checkpoint";
  Catalog c = list_checkpoints(tmp.path.string());
  ASSERT_EQ(c.committed.size(), 3u);
  EXPECT_EQ(c.committed[0].step, 30);
  EXPECT_EQ(c.committed[2].step, 10);
  ASSERT_EQ(c.uncommitted.size(), 1u);
  EXPECT_CONTAINS(c.uncommitted[0], "step_00000040.tmp");

  EXPECT_EQ(apply_retention(tmp.path.string(), 2).size(), 1u);
  EXPECT_FALSE(fs::exists(tmp.path / "step_00000010"));
  EXPECT_TRUE(fs::exists(tmp.path / "step_00000020"));
  EXPECT_EQ(apply_retention(tmp.path.string(), 0).size(), 1u);  // keep < 1 still keeps the newest
  EXPECT_TRUE(fs::exists(tmp.path / "step_00000030"));
  EXPECT_TRUE(fs::exists(tmp.path / "step_00000020.damaged"));  // set aside, never deleted
  EXPECT_EQ(remove_uncommitted(tmp.path.string()).size(), 1u);
  EXPECT_FALSE(fs::exists(tmp.path / "step_00000040.tmp"));
  EXPECT_TRUE(list_checkpoints(tmp.file("missing")).committed.empty());

  EXPECT_EQ(step_of("step_00000042"), 42);
  EXPECT_EQ(step_of("step_"), -1);
  EXPECT_EQ(step_of("step_12a"), -1);
  EXPECT_EQ(step_of("other"), -1);
}

TEST(CheckpointFormat, ModelDifferencesNameEveryKey) {
  runtime::ModelConfig a, b;
  EXPECT_TRUE(model_differences(a, b).empty());
  b.n_layer = 6;
  b.vocab_size = 300;
  b.tie_embeddings = !a.tie_embeddings;
  b.ln_eps = 1e-6f;  // not a shape: may change
  const auto d = model_differences(a, b);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].key, "model.n_layer");
  EXPECT_EQ(d[0].saved, "4");
  EXPECT_EQ(d[0].wanted, "6");
  EXPECT_EQ(d[1].key, "model.vocab_size");
  EXPECT_EQ(d[2].key, "model.tie_embeddings");
}
