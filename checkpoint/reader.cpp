// reader.cpp: verification (the bytes, shared by the ranks, then the structure), the
// attributes, and the layout-independent read of one rank's tensors and optimizer range.
#include "checkpoint/reader.h"

#include <algorithm>

#include "checkpoint/dataset_regions.h"
#include "checkpoint/h5_tensors.h"
#include "checkpoint/host_staging.h"
#include "checkpoint/manifest.h"
#include "checkpoint/writer.h"
#include "runtime/error.h"
#include "runtime/backend.h"

namespace nupipe::checkpoint {

namespace {

// The manifest's step and layout against the file's own attributes. The manifest has no
// checksum of its own, so an edited or misplaced one would otherwise name a checkpoint that is
// not there; asked only once the file's bytes are proven intact (checksums before parse).
std::vector<std::string> manifest_matches_file(const std::string& dir, const Manifest& m) {
  const CheckpointInfo info = read_info(dir);
  std::vector<std::string> problems;
  const std::string where = dir + "/" + kManifestName + ": ";
  if (m.step != info.state.step) {
    problems.push_back(where + "says step " + std::to_string(m.step) + ", but " +
                       kStateFileName + " holds step " + std::to_string(info.state.step));
  }
  if (m.layout != info.layout.describe()) {
    problems.push_back(where + "says layout \"" + m.layout + "\", but " + kStateFileName +
                       " was written by \"" + info.layout.describe() + "\"");
  }
  return problems;
}

// The bytes: the manifest, every file's size and the hashes of regions i % parts == part, by
// plain reads (no parser).
std::vector<std::string> verify_bytes(const std::string& dir, int part, int parts) {
  try {
    return verify_files(dir, Manifest::read(dir), part, parts);
  } catch (const Error& e) {
    return {e.what()};
  }
}

// The structure, asked only once every byte of every file is proven intact (by whichever
// rank hashed it): HDF5 parses the metadata, never a tensor's elements.
std::vector<std::string> verify_structure(const std::string& dir) {
  try {
    const Manifest manifest = Manifest::read(dir);
    std::vector<std::string> problems = manifest_matches_file(dir, manifest);
    for (std::string& p : check_dataset_regions(dir, manifest)) problems.push_back(std::move(p));
    return problems;
  } catch (const Error& e) {
    return {e.what()};
  }
}

// Every rank's lines to every rank, sorted, each once (the same problem found by several ranks,
// a missing manifest, is reported once).
std::vector<std::string> share_verdict(const std::vector<std::string>& mine,
                                       parallel::MpiCommunicator& world) {
  std::string text;
  for (const std::string& p : mine) text += p + "\n";
  const std::vector<std::string> all = world.gather_text(text);
  std::string joined;
  for (const std::string& t : all) joined += t;
  const std::string verdict = world.broadcast_text(joined, 0);  // rank 0 collected them
  std::vector<std::string> problems;
  size_t start = 0;
  for (size_t nl; (nl = verdict.find('\n', start)) != std::string::npos; start = nl + 1) {
    problems.push_back(verdict.substr(start, nl - start));
  }
  std::sort(problems.begin(), problems.end());
  problems.erase(std::unique(problems.begin(), problems.end()), problems.end());
  return problems;
}

}  // namespace

std::vector<std::string> verify_checkpoint(const std::string& dir) {
  std::vector<std::string> problems = verify_bytes(dir, 0, 1);
  if (problems.empty()) problems = verify_structure(dir);
  return problems;
}

std::vector<std::string> verify_checkpoint(const std::string& dir,
                                           parallel::MpiCommunicator& world) {
  // Two rounds, so that no rank parses a byte another rank found damaged: the shared hashing,
  // its verdict on every rank, then the structure on rank 0 and its verdict on every rank.
  std::vector<std::string> problems =
      share_verdict(verify_bytes(dir, world.rank(), world.size()), world);
  if (!problems.empty()) return problems;
  return share_verdict(world.rank() == 0 ? verify_structure(dir) : std::vector<std::string>(),
                       world);
}

CheckpointInfo read_info(const std::string& dir) {
  H5TensorReader r(dir + "/" + kStateFileName);
  if (!r.has_attr("format") || r.attr_string("format") != "nupipe-checkpoint") {
    throw checkpoint_error(r.path() + " is not a nupipe checkpoint (no format attribute)");
  }
  CheckpointInfo info;
  TrainingState& s = info.state;
  s.step = r.attr_int("step");
  s.optimizer_steps = r.attr_int("optimizer_steps");
  s.seed = static_cast<uint64_t>(r.attr_int("train.seed"));
  s.data_name = r.attr_string("data.name");
  s.data_tokens = r.attr_int("data.tokens");
  s.tokens_seen = r.has_attr("tokens_seen") ? r.attr_int("tokens_seen") : -1;
  for (const runtime::ModelKey& k : runtime::model_keys()) {  // the must-match model keys
    if (!r.has_attr(k.name) && k.absent) {  // written before the key existed
      k.set(info.model, k.absent);
    } else if (k.kind == runtime::ModelKey::Kind::text) {
      k.set(info.model, r.attr_string(k.name));
    } else if (k.kind == runtime::ModelKey::Kind::boolean) {
      k.set(info.model, r.attr_int(k.name) != 0 ? "true" : "false");
    } else {
      k.set(info.model, std::to_string(r.attr_int(k.name)));
    }
  }
  info.layout.pipeline = static_cast<int>(r.attr_int("layout.pipeline"));
  info.layout.data = static_cast<int>(r.attr_int("layout.data"));
  info.layout.zero = static_cast<int>(r.attr_int("layout.zero"));
  info.layout.stage_layers = r.attr_string("layout.stage_layers");
  info.config_toml = r.attr_string("config");
  info.nupipe_version = r.attr_string("nupipe_version");
  return info;
}

void load_rank_part(const std::string& dir, runtime::ParamStore& store, optim::AdamW& adamw,
                    int64_t optimizer_steps, size_t staging_bytes) {
  H5TensorReader r(dir + "/" + kStateFileName);
  // Every tensor and range goes file -> host chunk -> device, a chunk at a time.
  HostStaging staging(store.backend(), staging_bytes);
  auto read = [&](const std::string& dataset, int64_t in_tensor, runtime::DevPtr dst,
                  int64_t n) {
    staging.from_host(dst, n, [&](float* host, int64_t first, int64_t count) {
      r.read_range(dataset, in_tensor + first, host, count);
    });
  };
  for (const runtime::TensorSpec& s : store.specs()) {
    r.require_f32(model_dataset(s.name), s.shape);
    read(model_dataset(s.name), 0, store.param(s.name).data(), s.numel());
  }
  // The optimizer range's pieces of tensors; its padding (in no dataset) is zero.
  const int64_t end = std::min(adamw.end(), store.numel());
  const bool master = adamw.owns_master();  // the exact fp32 weights (the compute copy is rounded)
  for (const runtime::SpecPiece& p : store.pieces(adamw.begin(), end)) {
    const int64_t in_tensor = p.begin - p.spec->offset, local = p.begin - adamw.begin();
    read(exp_avg_dataset(p.spec->name), in_tensor, adamw.exp_avg().data() + local, p.numel());
    read(exp_avg_sq_dataset(p.spec->name), in_tensor, adamw.exp_avg_sq().data() + local,
         p.numel());
    if (master) {
      read(model_dataset(p.spec->name), in_tensor, adamw.master().data() + local, p.numel());
    }
  }
  const int64_t pad_begin = std::max(adamw.begin(), end), pad = adamw.end() - pad_begin;
  if (pad > 0) {
    const int64_t local = pad_begin - adamw.begin();
    staging.zeros_to_device(adamw.exp_avg().data() + local, pad);
    staging.zeros_to_device(adamw.exp_avg_sq().data() + local, pad);
    if (master) staging.zeros_to_device(adamw.master().data() + local, pad);
  }
  adamw.set_steps_taken(optimizer_steps);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> list_tensors(const std::string& dir) {
  H5TensorReader r(dir + "/" + kStateFileName);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  std::vector<std::string> todo{"model", "optim"};  // groups to walk (a written checkpoint has both)
  while (!todo.empty()) {
    const std::string g = todo.back();
    todo.pop_back();
    for (const std::string& name : r.list(g)) {
      const std::string full = g + "/" + name;
      if (r.has(full)) out.emplace_back(full, r.shape(full));
      else todo.push_back(full);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace nupipe::checkpoint
