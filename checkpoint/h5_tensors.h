// h5_tensors.h: named tensors and scalar attributes in one HDF5 file. H5TensorWriter creates
// a file of float32/int32 datasets ("model/blocks.0.attn.qkv.weight" makes the groups on its
// way), alone or with every rank of an MPI communicator writing its own ranges of them;
// H5TensorReader reads them back, whole or by flat range, with their shapes checked.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/parse_guard.h"

namespace nupipe::checkpoint {

// One HDF5 identifier and the function that closes it (H5Fclose, H5Dclose, ...). Move-only.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Handle(H5Handle&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  H5Handle& operator=(H5Handle&& other) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t get() const { return id_; }
  // Gives up ownership without closing (for a checked close by the caller).
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  void reset();  // closes, ignoring errors (destructors must not throw)

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// Writes a new file (an existing one is truncated). Tensors are row-major with `shape` as
// their dimensions (empty shape: a scalar); names use '/' for groups. Attributes go on the
// root group; writing an attribute again replaces it. Every failure throws nupipe::Error
// with ExitCode::checkpoint naming the file and the dataset or attribute.
class H5TensorWriter {
 public:
  explicit H5TensorWriter(const std::string& path);
  // Parallel HDF5 (MPI_COMM_NULL: the first form): every rank of `comm` opens the same file
  // through MPI-IO. create() and
  // attr() are then collective (every rank, same calls, same order, same values);
  // write_range() is independent (a rank writes only what it holds).
  H5TensorWriter(const std::string& path, MPI_Comm comm);

  // A float32 dataset of `shape`, contiguous, its storage allocated now and never filled
  // (every element is then written by some write_range). Returns its byte offset in the file.
  int64_t create(const std::string& name, const std::vector<int64_t>& shape);
  // Elements [begin, begin + n) of the row-major flattening of dataset `name`.
  void write_range(const std::string& name, int64_t begin, const float* data, int64_t n);

  void write(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  void write(const std::string& name, const int32_t* data, const std::vector<int64_t>& shape);
  void attr(const std::string& key, double v);
  void attr(const std::string& key, int64_t v);
  void attr(const std::string& key, int v) { attr(key, static_cast<int64_t>(v)); }
  void attr(const std::string& key, const std::string& v);
  void attr(const std::string& key, const char* v) { attr(key, std::string(v)); }

  // Flushes (MPI_File_sync on every rank in parallel mode) and closes the file now (the
  // destructor closes it otherwise, without throwing).
  void close();
  const std::string& path() const { return path_; }

 private:
  void write_raw(const std::string& name, const void* data, const std::vector<int64_t>& shape,
                 hid_t file_type, hid_t mem_type);
  void write_attr(const std::string& key, hid_t file_type, hid_t space, hid_t mem_type,
                  const void* value);

  std::string path_;
  bool parallel_ = false;
  H5Handle file_;
  H5Handle root_;
  std::map<std::string, H5Handle> open_;  // datasets made by create(), open until close()
};

// Reads a file written by H5TensorWriter (or by h5py: any float32/int32 datasets and numeric or
// string attributes). A missing file, dataset or attribute, a dtype other than the one asked
// for, or a shape other than the expected one throws nupipe::Error (ExitCode::checkpoint).
class H5TensorReader {
 public:
  explicit H5TensorReader(const std::string& path);

  std::vector<int64_t> shape(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<int32_t> read_i32(const std::string& name) const;
  // The same, refusing a dataset whose shape is not `expect`.
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& expect) const;
  std::vector<int32_t> read_i32(const std::string& name, const std::vector<int64_t>& expect) const;
  // Into a caller's buffer of prod(expect) elements, refusing any other shape.
  void read_into(const std::string& name, float* out, const std::vector<int64_t>& expect) const;
  void read_into(const std::string& name, int32_t* out, const std::vector<int64_t>& expect) const;
  // Elements [begin, begin + n) of the row-major flattening of float32 dataset `name`.
  void read_range(const std::string& name, int64_t begin, float* out, int64_t n) const;
  // Refuses (as read_f32 with `expect` does) a dataset that is not float32 of that shape.
  void require_f32(const std::string& name, const std::vector<int64_t>& expect) const;

  // True when a dataset (not a group) of that name exists.
  bool has(const std::string& name) const;
  // Every dataset of the file by full name ("model/x"), sorted, walking groups from the root
  // through hard links only; a soft, external or user-defined link, or groups nested deeper
  // than 32, throw nupipe::Error (checkpoint): nupipe writes none.
  std::vector<std::string> datasets() const;
  // Where HDF5 keeps a dataset's elements (read from its metadata; no element is read).
  struct Storage {
    bool contiguous = false;    // one block of this file: no chunks, compact or external storage
    int64_t offset = -1;        // that block's first byte in the file; -1 when not allocated
    int64_t bytes = 0;          // the storage HDF5 holds for it (H5Dget_storage_size)
    int64_t elements = 0;
    int64_t element_bytes = 0;  // of its type in the file
  };
  Storage storage(const std::string& name) const;
  bool has_attr(const std::string& key) const;
  double attr_double(const std::string& key) const;  // any numeric attribute
  int64_t attr_int(const std::string& key) const;    // integer attributes only
  std::string attr_string(const std::string& key) const;
  // Names of the direct members (datasets and groups) of `group` ("" or "/" for the root),
  // relative to it, sorted.
  std::vector<std::string> list(const std::string& group) const;

  const std::string& path() const { return path_; }

 private:
  struct Typed;  // an open dataset whose element type was checked, and its shape
  H5Handle open_dataset(const std::string& name) const;
  Typed open_typed(const std::string& name, bool want_float) const;
  std::vector<int64_t> shape_of(hid_t dataset, const std::string& name) const;
  void read_typed(const Typed& t, const std::string& name, void* out) const;
  void check_shape(const std::string& name, const std::vector<int64_t>& got,
                   const std::vector<int64_t>& expect) const;
  H5Handle open_attr(const std::string& key) const;

  ParseGuard guard_;  // first made, last gone: the whole life of the open file
  std::string path_;
  H5Handle file_;
  H5Handle root_;
};

}  // namespace nupipe::checkpoint
