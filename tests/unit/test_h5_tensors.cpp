// test_h5_tensors.cpp: H5TensorWriter / H5TensorReader round trips (f32, i32, attributes,
// nested names) and their errors (missing file, dataset, attribute; wrong dtype or shape).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/h5_tensors.h"
#include "runtime/error.h"

namespace nupipe::checkpoint {
namespace {

namespace fs = std::filesystem;

class H5TensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("nupipe_h5_" + std::to_string(getpid()) + "_" + info->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Runs `fn`, expects a nupipe::Error with ExitCode::checkpoint whose message contains every
// one of `needles`.
template <class Fn>
void expect_checkpoint_error(Fn fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no exception thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::checkpoint) << e.what();
    for (const auto& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message lacks '" << n << "': " << e.what();
    }
  }
}

TEST_F(H5TensorsTest, RoundTripTensorsAndAttributes) {
  const std::string path = file("t.h5");
  std::vector<float> w(3 * 4 * 2);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(i) - 1.5f;
  w[5] = -0.0f;
  w[7] = 3.4028235e38f;
  w[9] = 1e-42f;  // denormal survives bit-exactly
  std::vector<int32_t> tok = {0, 1, -7, 2147483647, -2147483647 - 1, 42};
  const float scalar = 2.5f;
  {
    H5TensorWriter out(path);
    out.write("model/blocks.0.attn.qkv.weight", w.data(), {3, 4, 2});
    out.write("batch/tokens", tok.data(), {2, 3});
    out.write("scalar", &scalar, {});
    out.write("empty", static_cast<const float*>(nullptr), {0, 5});
    out.attr("loss", 3.141592653589793);
    out.attr("n_layer", int64_t{12});
    out.attr("tie_embeddings", 1);
    out.attr("name", std::string("tiny-gpt \u00e9"));
    out.attr("n_layer", int64_t{13});  // rewriting replaces
    out.close();
  }
  H5TensorReader in(path);
  EXPECT_EQ(in.shape("model/blocks.0.attn.qkv.weight"), (std::vector<int64_t>{3, 4, 2}));
  const auto w2 = in.read_f32("model/blocks.0.attn.qkv.weight");
  ASSERT_EQ(w2.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(std::memcmp(&w[i], &w2[i], sizeof(float)), 0) << "element " << i;
  }
  EXPECT_EQ(in.read_i32("batch/tokens", {2, 3}), tok);
  std::vector<int32_t> tok2(6);
  in.read_into("batch/tokens", tok2.data(), {2, 3});
  EXPECT_EQ(tok2, tok);
  EXPECT_EQ(in.shape("scalar"), std::vector<int64_t>{});
  EXPECT_EQ(in.read_f32("scalar"), std::vector<float>{2.5f});
  EXPECT_EQ(in.shape("empty"), (std::vector<int64_t>{0, 5}));
  EXPECT_TRUE(in.read_f32("empty").empty());

  EXPECT_DOUBLE_EQ(in.attr_double("loss"), 3.141592653589793);
  EXPECT_EQ(in.attr_int("n_layer"), 13);
  EXPECT_EQ(in.attr_int("tie_embeddings"), 1);
  EXPECT_DOUBLE_EQ(in.attr_double("n_layer"), 13.0);  // integers read as double too
  EXPECT_EQ(in.attr_string("name"), "tiny-gpt \u00e9");
  EXPECT_TRUE(in.has_attr("loss"));
  EXPECT_FALSE(in.has_attr("nope"));

  EXPECT_TRUE(in.has("model/blocks.0.attn.qkv.weight"));
  EXPECT_FALSE(in.has("model"));  // a group, not a dataset
  EXPECT_FALSE(in.has("model/blocks.1.attn.qkv.weight"));
  EXPECT_FALSE(in.has("nowhere/at/all"));
  EXPECT_FALSE(in.has("scalar/below"));
  EXPECT_EQ(in.list(""), (std::vector<std::string>{"batch", "empty", "model", "scalar"}));
  EXPECT_EQ(in.list("/"), in.list(""));
  EXPECT_EQ(in.list("model"), std::vector<std::string>{"blocks.0.attn.qkv.weight"});
}

TEST_F(H5TensorsTest, HandlesAreClosed) {
  const std::string path = file("t.h5");
  const float x[2] = {1, 2};
  {
    H5TensorWriter out(path);
    out.write("a/b", x, {2});
    out.attr("k", 1.0);
    EXPECT_THROW(out.write("a/b", x, {2}), Error);
  }
  {
    H5TensorReader in(path);
    EXPECT_EQ(in.read_f32("a/b").size(), 2u);
    EXPECT_THROW(in.read_i32("a/b"), Error);
    EXPECT_EQ(in.list("a").size(), 1u);
    EXPECT_EQ(in.attr_double("k"), 1.0);
  }
  // Every file, group, dataset and attribute id was closed by its RAII owner, errors included.
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

TEST_F(H5TensorsTest, MissingFileNamesIt) {
  const std::string path = file("does-not-exist.h5");
  expect_checkpoint_error([&] { H5TensorReader in(path); }, {path, "does not exist"});
}

TEST_F(H5TensorsTest, NotAnHdf5FileNamesIt) {
  const std::string path = file("junk.h5");
  std::ofstream(path) << "this is not HDF5\n";
  expect_checkpoint_error([&] { H5TensorReader in(path); }, {path, "not an HDF5 file"});
}

TEST_F(H5TensorsTest, UnwritableLocationNamesIt) {
  const std::string path = file("no/such/dir/t.h5");
  expect_checkpoint_error([&] { H5TensorWriter out(path); }, {path, "creating HDF5 file"});
}

TEST_F(H5TensorsTest, MissingDatasetAndAttributeNameFileAndName) {
  const std::string path = file("t.h5");
  const float x[2] = {1, 2};
  {
    H5TensorWriter out(path);
    out.write("model/a", x, {2});
  }  // the destructor closes the file
  H5TensorReader in(path);
  expect_checkpoint_error([&] { in.read_f32("model/b"); }, {path, "model/b", "not found"});
  expect_checkpoint_error([&] { in.read_f32("grad/a"); }, {path, "grad/a", "not found"});
  expect_checkpoint_error([&] { in.shape("model/a/b"); }, {path, "model/a/b", "not found"});
  expect_checkpoint_error([&] { in.attr_double("loss"); }, {path, "loss", "not found"});
  expect_checkpoint_error([&] { in.list("grad"); }, {path, "grad", "no such group"});
}

TEST_F(H5TensorsTest, WrongDtypeAndShapeAreRefused) {
  const std::string path = file("t.h5");
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const int32_t t[2] = {1, 2};
  {
    H5TensorWriter out(path);
    out.write("x", x, {2, 3});
    out.write("t", t, {2});
    out.attr("loss", 1.5);
    out.attr("name", std::string("n"));
  }
  H5TensorReader in(path);
  expect_checkpoint_error([&] { in.read_i32("x"); }, {path, "'x'", "float32", "expected int32"});
  expect_checkpoint_error([&] { in.read_f32("t"); }, {path, "'t'", "int32", "expected float32"});
  expect_checkpoint_error([&] { in.read_f32("x", {3, 2}); }, {path, "'x'", "[2, 3]", "[3, 2]"});
  std::vector<float> buf(6);
  expect_checkpoint_error([&] { in.read_into("x", buf.data(), {6}); }, {path, "[2, 3]", "[6]"});
  expect_checkpoint_error([&] { in.attr_int("loss"); }, {path, "loss", "expected an integer"});
  expect_checkpoint_error([&] { in.attr_double("name"); }, {path, "name", "expected a number"});
  EXPECT_EQ(in.read_f32("x", {2, 3}), std::vector<float>(x, x + 6));
}

TEST_F(H5TensorsTest, WriterRefusesDuplicatesAndBadShapes) {
  const std::string path = file("t.h5");
  const float x[2] = {1, 2};
  H5TensorWriter out(path);
  out.write("model/a", x, {2});
  expect_checkpoint_error([&] { out.write("model/a", x, {2}); },
                          {path, "model/a", "already exists"});
  expect_checkpoint_error([&] { out.write("model/b", x, {-1}); }, {path, "model/b", "negative"});
  expect_checkpoint_error([&] { out.write("model/a/c", x, {2}); }, {path, "model/a/c"});
  out.close();
  expect_checkpoint_error([&] { out.write("model/d", x, {2}); }, {path, "closed"});
}

}  // namespace
}  // namespace nupipe::checkpoint
