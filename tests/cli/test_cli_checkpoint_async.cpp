// test_cli_checkpoint_async.cpp: checkpoint.async on one process: its checkpoints hold the
// same bytes as synchronous ones, its snapshot's host memory is predicted and measured to the
// byte in memory.json, the thread level and the save's thread are logged; and the outcome line
// of a failed run carries a multi-line reason whole, on one line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.h"

namespace nupipe::cli_test {
namespace {

const std::vector<std::string> kRun = {"train.steps=6", "checkpoint.every=3", "data.val=",
                                       "runtime.threads=1", "run.log_every=1"};

std::vector<std::string> with(std::vector<std::string> sets, const std::vector<std::string>& more) {
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

// The data regions of a checkpoint's manifest: (what, xxh3) in file order, HDF5's own
// metadata left out (it records object times).
std::vector<std::pair<std::string, std::string>> data_regions(const std::string& dir) {
  const nlohmann::json m = nlohmann::json::parse(read_file(dir + "/manifest.json"));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : m["files"][0]["regions"]) {
    const std::string what = r["what"];
    if (what.rfind("hdf5", 0) != 0) out.emplace_back(what, r["xxh3"].get<std::string>());
  }
  return out;
}

TEST(CliCheckpointAsync, SameBytesAsSynchronousSavesAndItsSnapshotAccounted) {
  TempDir tmp;
  const std::string sync = tmp.file("sync"), async = tmp.file("async");
  const ProcessResult a = run_train(tiny_config(), with(kRun, {"run.dir=" + sync}), tmp.path());
  ASSERT_EQ(a.exit_code, 0) << a;
  const ProcessResult b = run_train(
      tiny_config(), with(kRun, {"run.dir=" + async, "checkpoint.async=true"}), tmp.path());
  ASSERT_EQ(b.exit_code, 0) << b;
  for (const char* step : {"step_00000003", "step_00000006"}) {
    const auto ra = data_regions(sync + "/checkpoints/" + step);
    const auto rb = data_regions(async + "/checkpoints/" + step);
    ASSERT_FALSE(ra.empty());
    EXPECT_EQ(ra, rb) << step;
  }
  EXPECT_NE(a.output.find("MPI thread level: MPI_THREAD_SINGLE"), std::string::npos) << a;
  EXPECT_NE(b.output.find("MPI thread level: MPI_THREAD_MULTIPLE"), std::string::npos) << b;
  EXPECT_NE(b.output.find("thread nupipe-ckpt"), std::string::npos) << b;
  EXPECT_NE(b.output.find("saved in the background; training stalled"), std::string::npos) << b;
  // One rank holds every tensor: the snapshot is 3 x 4 bytes per parameter not tied.
  const nlohmann::json sm = nlohmann::json::parse(read_file(sync + "/memory.json"));
  EXPECT_FALSE(sm["ranks"][0].contains("host_tags")) << "no snapshot without async";
  const nlohmann::json am = nlohmann::json::parse(read_file(async + "/memory.json"));
  const auto& snap = am["ranks"][0]["host_tags"]["checkpoint_snapshot"];
  const nlohmann::json man =
      nlohmann::json::parse(read_file(async + "/checkpoints/step_00000006/manifest.json"));
  int64_t data_bytes = 0;
  for (const auto& r : man["files"][0]["regions"]) {
    if (r["what"].get<std::string>().rfind("hdf5", 0) != 0) data_bytes += r["bytes"].get<int64_t>();
  }
  EXPECT_EQ(snap["predicted"].get<int64_t>(), data_bytes) << snap;
  EXPECT_EQ(snap["measured_peak"].get<int64_t>(), data_bytes) << snap;
}

TEST(CliCheckpointAsync, OutcomeLineCarriesAMultiLineReasonWhole) {
  TempDir tmp;
  const std::string first = tmp.file("first"), second = tmp.file("second");
  ASSERT_EQ(run_train(tiny_config(), with(kRun, {"run.dir=" + first, "train.steps=3"}),
                      tmp.path()).exit_code, 0);
  // A flipped byte in the middle of the file: a checksum mismatch, reported under
  // "... is damaged or incomplete:" on the lines after it.
  const std::string ckpt = first + "/checkpoints/step_00000003";
  {
    std::fstream f(ckpt + "/state.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekg(size / 2);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(size / 2);
    f.write(&c, 1);
  }
  const ProcessResult r = run_train(
      tiny_config(), with(kRun, {"run.dir=" + second, "checkpoint.resume=" + ckpt}), tmp.path());
  ASSERT_EQ(r.exit_code, 4) << r;
  // The refusal comes before run.dir is prepared: the line is in the output only.
  const size_t from = r.output.find("outcome: ");
  ASSERT_NE(from, std::string::npos) << r;
  const std::string line = r.output.substr(from, r.output.find('\n', from) - from);
  EXPECT_NE(line.find("outcome: failed (exit 4)"), std::string::npos) << line;
  EXPECT_EQ(line.find("incomplete:;"), std::string::npos) << line;
  const size_t at = line.find("is damaged or incomplete: ");
  ASSERT_NE(at, std::string::npos) << line;
  // The problem itself follows, and the line ends as every outcome line does.
  EXPECT_NE(line.find("checksum", at), std::string::npos) << line;
  EXPECT_NE(line.find("; recorded in " + second + "/outcome.json"), std::string::npos) << line;
}

}  // namespace
}  // namespace nupipe::cli_test
