// test_checkpoint_regions.cpp: check_dataset_regions on one process: a file whose manifest
// regions tile each dataset at its offset agrees; regions with a gap, an overlap, a range
// past the end, a wrong offset, a dataset of no region, a region of no dataset, a malformed
// name, or a dataset stored in chunks are each refused naming the dataset; and the data
// region names parse only in the writer's own spelling.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>

#include "checkpoint/dataset_regions.h"
#include "checkpoint/h5_tensors.h"
#include "checkpoint/manifest.h"

namespace fs = std::filesystem;
using namespace nupipe::checkpoint;

namespace {

struct RegionsDir {
  fs::path path;
  RegionsDir() {
    path = fs::temp_directory_path() /
           ("nupipe_ckregions_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~RegionsDir() { fs::remove_all(path); }
  std::string state() const { return (path / kStateFileName).string(); }
};

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

// state.h5 with "model/a" [6] and "optim/b" [2, 5], each written in two pieces, and the
// manifest the writer would make of it (data regions at their offsets, metadata between).
Manifest write_file(const RegionsDir& dir) {
  std::vector<Region> data;
  {
    H5TensorWriter w(dir.state());
    const int64_t a = w.create("model/a", {6});
    const int64_t b = w.create("optim/b", {2, 5});
    const std::vector<float> va{1, 2, 3, 4, 5, 6}, vb(10, 0.5f);
    w.write_range("model/a", 0, va.data(), 4);
    w.write_range("model/a", 4, va.data() + 4, 2);
    w.write_range("optim/b", 0, vb.data(), 3);
    w.write_range("optim/b", 3, vb.data() + 3, 7);
    w.close();
    data = {{"model/a [0, 4)", a, 16, 0}, {"model/a [4, 6)", a + 16, 8, 0},
            {"optim/b [0, 3)", b, 12, 0}, {"optim/b [3, 10)", b + 12, 28, 0}};
  }
  std::ifstream in(dir.state(), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (Region& r : data) r.xxh3 = xxh3(bytes.data() + r.offset, static_cast<size_t>(r.bytes));
  ManifestFile f{kStateFileName, static_cast<int64_t>(bytes.size()), data};
  for (Region& g : hash_gaps(dir.state(), f.bytes, data)) f.regions.push_back(g);
  std::sort(f.regions.begin(), f.regions.end(),
            [](const Region& x, const Region& y) { return x.offset < y.offset; });
  Manifest m;
  m.files.push_back(f);
  return m;
}

Region& region(Manifest& m, const std::string& what) {
  for (Region& r : m.files[0].regions) {
    if (r.what == what) return r;
  }
  throw std::runtime_error("no region " + what);
}

}  // namespace

TEST(CheckpointRegions, DataRegionNamesParseOnlyInTheWritersSpelling) {
  std::string name;
  int64_t b = -1, e = -1;
  ASSERT_TRUE(parse_data_region("model/blocks.0.attn.qkv.weight [0, 4096)", &name, &b, &e));
  EXPECT_EQ(name, "model/blocks.0.attn.qkv.weight");
  EXPECT_EQ(b, 0);
  EXPECT_EQ(e, 4096);
  ASSERT_TRUE(parse_data_region("odd [name] [3, 3)", &name, &b, &e));  // the last " [" counts
  EXPECT_EQ(name, "odd [name]");
  for (const char* bad : {"hdf5 metadata", "model/x", "model/x [0, 4", "model/x [0, 4) ",
                          "model/x [00, 4)", "model/x [+0, 4)", "model/x [0,4)",
                          "model/x [-1, 4)", "model/x [5, 4)", " [0, 4)", "model/x [0, 4)x"}) {
    EXPECT_FALSE(parse_data_region(bad, &name, &b, &e)) << bad;
  }
}

TEST(CheckpointRegions, EachDatasetMustLieWhereItsRegionsSay) {
  RegionsDir dir;
  const Manifest good = write_file(dir);
  EXPECT_TRUE(verify_files(dir.path.string(), good).empty());
  EXPECT_EQ(joined(check_dataset_regions(dir.path.string(), good)), "");

  struct Case {
    const char* what;
    std::function<void(Manifest&)> edit;
    std::string wanted;
  };
  const std::vector<Case> cases{
      {"offset moved", [](Manifest& m) { region(m, "model/a [4, 6)").offset += 4; },
       "so its elements [4, 6) are at bytes ["},
      {"gap", [](Manifest& m) { region(m, "optim/b [3, 10)").what = "optim/b [4, 10)"; },
       "leave a gap at 'optim/b [4, 10)'"},
      {"past the end", [](Manifest& m) { region(m, "optim/b [3, 10)").what = "optim/b [3, 11)"; },
       "go past its end at 'optim/b [3, 11)'"},
      {"overlap", [](Manifest& m) { region(m, "model/a [4, 6)").what = "model/a [3, 6)"; },
       "overlap at 'model/a [3, 6)'"},
      {"short", [](Manifest& m) {
         Region& r = region(m, "model/a [4, 6)");
         r.what = "model/a [4, 5)";
         r.bytes = 4;
       },
       "end at element 5 of 6"},
      {"no region", [](Manifest& m) {
         region(m, "optim/b [0, 3)").what = "hdf5 metadata";
         region(m, "optim/b [3, 10)").what = "hdf5 metadata";
       },
       "but no region of the manifest is named after it"},
      {"no dataset", [](Manifest& m) { region(m, "model/a [0, 4)").what = "model/c [0, 4)"; },
       "names dataset 'model/c', which state.h5 does not hold"},
      {"malformed", [](Manifest& m) { region(m, "model/a [0, 4)").what = "model/a [0, 4"; },
       "is neither hdf5 metadata nor elements [begin, end) of a dataset"},
  };
  for (const Case& c : cases) {
    Manifest m = good;
    c.edit(m);
    const std::string text = joined(check_dataset_regions(dir.path.string(), m));
    EXPECT_NE(text.find(c.wanted), std::string::npos) << c.what << ": " << text;
    EXPECT_NE(text.find("the manifest does not describe this file"), std::string::npos)
        << c.what << ": " << text;
  }
}

TEST(CheckpointRegions, ADatasetStoredInChunksIsRefused) {
  RegionsDir dir;
  {
    const hid_t file = H5Fcreate(dir.state().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    const hsize_t dims[1] = {8}, chunk[1] = {4};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    const hid_t dset = H5Dcreate2(file, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl,
                                  H5P_DEFAULT);
    const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(dset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(file);
  }
  Manifest m;
  m.files.push_back({kStateFileName, static_cast<int64_t>(fs::file_size(dir.state())),
                     {{"x [0, 8)", 0, 32, 0}}});
  const std::string text = joined(check_dataset_regions(dir.path.string(), m));
  EXPECT_NE(text.find("dataset 'x' is not one contiguous, allocated block of the file"),
            std::string::npos)
      << text;
}
