// h5_tensors.cpp: H5Handle, H5TensorWriter (serial access, or parallel HDF5 over MPI-IO) and
// the helpers the reader shares (checkpoint/h5_common.h), on the HDF5 C API, every call
// checked through NUPIPE_H5 so that failures name the file and the dataset.
#include "checkpoint/h5_tensors.h"
#include "checkpoint/h5_common.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <sstream>

#include "checkpoint/h5_check.h"

namespace nupipe::checkpoint {

namespace h5 {

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// "float32", "int64", "uint8", "string", ... for messages.
std::string dtype_str(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t bits = H5Tget_size(type) * 8;
  switch (cls) {
    case H5T_FLOAT:
      return "float" + std::to_string(bits);
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
    case H5T_STRING:
      return "string";
    case H5T_ENUM:
      return "enum (bool?)";
    case H5T_COMPOUND:
      return "compound";
    default:
      return "HDF5 type class " + std::to_string(static_cast<int>(cls));
  }
}

// True when every component of the '/'-separated `name` exists below `loc`, the ones before
// the last being groups. (H5Lexists fails, rather than answering false, on a missing parent.)
bool link_exists(hid_t loc, const std::string& name) {
  std::string prefix;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    const std::string part = name.substr(start, slash - start);
    start = slash + 1;
    if (part.empty()) continue;
    prefix += (prefix.empty() && name[0] != '/' ? "" : "/") + part;
    if (NUPIPE_H5(H5Lexists(loc, prefix.c_str(), H5P_DEFAULT)) <= 0) return false;
    if (start <= name.size()) {  // an intermediate component: must be a group to go on
      H5Handle obj(NUPIPE_H5(H5Oopen(loc, prefix.c_str(), H5P_DEFAULT)), H5Oclose);
      if (H5Iget_type(obj.get()) != H5I_GROUP) return false;
    }
  }
  return !prefix.empty();
}

size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

namespace {

// Selects elements [begin, begin + n) of the row-major flattening of a dataspace of `dims`
// as a union of hyperslab blocks (HDF5 visits the selection in row-major order, which is the
// flat order). Recursive: a partial first row, whole rows, a partial last row.
void select_flat(hid_t space, const std::vector<hsize_t>& dims, size_t axis,
                 std::vector<hsize_t>& start, std::vector<hsize_t>& count, hsize_t begin,
                 hsize_t n, bool& first) {
  if (n == 0) return;
  hsize_t row = 1;  // elements per index of this axis
  for (size_t d = axis + 1; d < dims.size(); ++d) row *= dims[d];
  auto add = [&](hsize_t idx, hsize_t rows) {  // whole rows idx .. idx + rows of this axis
    start[axis] = idx;
    count[axis] = rows;
    for (size_t d = axis + 1; d < dims.size(); ++d) start[d] = 0, count[d] = dims[d];
    NUPIPE_H5(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, start.data(),
                                  nullptr, count.data(), nullptr));
    first = false;
  };
  hsize_t idx = begin / row, off = begin % row;
  if (off != 0) {  // the tail of one row
    const hsize_t take = std::min(n, row - off);
    start[axis] = idx, count[axis] = 1;
    select_flat(space, dims, axis + 1, start, count, off, take, first);
    begin += take, n -= take, ++idx;
  }
  if (n >= row) {
    add(idx, n / row);
    idx += n / row;
    n %= row;
  }
  if (n > 0) {  // the head of one row
    start[axis] = idx, count[axis] = 1;
    select_flat(space, dims, axis + 1, start, count, 0, n, first);
  }
}

}  // namespace

// The file dataspace of `dataset` with [begin, begin + n) of its flattening selected.
H5Handle flat_selection(hid_t dataset, int64_t begin, int64_t n, const std::string& ctx) {
  H5Handle space(NUPIPE_H5_MSG(H5Dget_space(dataset), ctx), H5Sclose);
  const int rank = NUPIPE_H5_MSG(H5Sget_simple_extent_ndims(space.get()), ctx);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) NUPIPE_H5_MSG(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), ctx);
  hsize_t total = 1;
  for (hsize_t d : dims) total *= d;
  if (begin < 0 || n < 0 || static_cast<hsize_t>(begin + n) > total) {
    throw checkpoint_error(ctx + ": elements [" + std::to_string(begin) + ", " +
                           std::to_string(begin + n) + ") outside a dataset of " +
                           std::to_string(total));
  }
  if (rank == 0) return space;  // a scalar: the whole (one-element) space
  std::vector<hsize_t> start(dims.size(), 0), count(dims.size(), 0);
  bool first = true;
  select_flat(space.get(), dims, 0, start, count, static_cast<hsize_t>(begin),
              static_cast<hsize_t>(n), first);
  return space;
}

}  // namespace h5

using namespace h5;

// ---- H5Handle ----------------------------------------------------------------------------

H5Handle& H5Handle::operator=(H5Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = -1;
  }
  return *this;
}

void H5Handle::reset() {
  if (id_ >= 0 && close_ != nullptr) {
    if (close_(id_) < 0) H5Eclear2(H5E_DEFAULT);
  }
  id_ = -1;
}

// ---- H5TensorWriter ------------------------------------------------------------------------

H5TensorWriter::H5TensorWriter(const std::string& path) : H5TensorWriter(path, MPI_COMM_NULL) {}

H5TensorWriter::H5TensorWriter(const std::string& path, MPI_Comm comm)
    : path_(path), parallel_(comm != MPI_COMM_NULL) {
  h5_silence_errors();
  H5Handle fapl(NUPIPE_H5(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  if (parallel_) {
    NUPIPE_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL));
    // Metadata writes at flush as collectives (reads stay independent: write_range is).
    NUPIPE_H5(H5Pset_coll_metadata_write(fapl.get(), true));
  }
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (file < 0) {
    NUPIPE_FAIL(ExitCode::checkpoint, "H5Fcreate(path, H5F_ACC_TRUNC, ...)",
                h5_failure_detail("creating HDF5 file " + q(path)),
                "check that the directory exists, is writable and the disk is not full");
  }
  file_ = H5Handle(file, H5Fclose);
  root_ = H5Handle(
      NUPIPE_H5_MSG(H5Gopen2(file, "/", H5P_DEFAULT), "opening the root of " + q(path)), H5Gclose);
}

int64_t H5TensorWriter::create(const std::string& name, const std::vector<int64_t>& shape) {
  const std::string ctx = "creating dataset " + q(name) + " in " + q(path_);
  if (file_.get() < 0) throw checkpoint_error(ctx + ": the file was already closed");
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Handle space(NUPIPE_H5_MSG(H5Screate_simple(static_cast<int>(dims.size()), dims.data(),
                                                nullptr),
                               ctx),
                 H5Sclose);
  H5Handle lcpl(NUPIPE_H5_MSG(H5Pcreate(H5P_LINK_CREATE), ctx), H5Pclose);
  NUPIPE_H5_MSG(H5Pset_create_intermediate_group(lcpl.get(), 1), ctx);
  H5Handle dcpl(NUPIPE_H5_MSG(H5Pcreate(H5P_DATASET_CREATE), ctx), H5Pclose);
  NUPIPE_H5_MSG(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), ctx);
  NUPIPE_H5_MSG(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), ctx);
  NUPIPE_H5_MSG(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), ctx);
  H5Handle dset(NUPIPE_H5_MSG(H5Dcreate2(file_.get(), name.c_str(), H5T_IEEE_F32LE, space.get(),
                                         lcpl.get(), dcpl.get(), H5P_DEFAULT),
                              ctx),
                H5Dclose);
  const haddr_t offset = H5Dget_offset(dset.get());
  if (offset == HADDR_UNDEF) throw checkpoint_error(ctx + ": HDF5 gave it no file offset");
  // Kept open until close(): in parallel mode opening and closing are collective, while
  // write_range is not.
  open_.emplace(name, std::move(dset));
  return static_cast<int64_t>(offset);
}

void H5TensorWriter::write_range(const std::string& name, int64_t begin, const float* data,
                                 int64_t n) {
  const std::string ctx = "writing elements [" + std::to_string(begin) + ", " +
                          std::to_string(begin + n) + ") of " + q(name) + " to " + q(path_);
  if (file_.get() < 0) throw checkpoint_error(ctx + ": the file was already closed");
  if (n == 0) return;
  const auto it = open_.find(name);
  if (it == open_.end()) throw checkpoint_error(ctx + ": it was not create()d by this writer");
  H5Handle file_space = flat_selection(it->second.get(), begin, n, ctx);
  const hsize_t count = static_cast<hsize_t>(n);
  H5Handle mem_space(NUPIPE_H5_MSG(H5Screate_simple(1, &count, nullptr), ctx), H5Sclose);
  NUPIPE_H5_MSG(H5Dwrite(it->second.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(),
                         H5P_DEFAULT, data),
                ctx);
}

void H5TensorWriter::write(const std::string& name, const float* data,
                           const std::vector<int64_t>& shape) {
  write_raw(name, data, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
}

void H5TensorWriter::write(const std::string& name, const int32_t* data,
                           const std::vector<int64_t>& shape) {
  write_raw(name, data, shape, H5T_STD_I32LE, H5T_NATIVE_INT32);
}

void H5TensorWriter::write_raw(const std::string& name, const void* data,
                               const std::vector<int64_t>& shape, hid_t file_type, hid_t mem_type) {
  const std::string ctx = "writing dataset " + q(name) + " to " + q(path_);
  if (file_.get() < 0) throw checkpoint_error(ctx + ": the file was already closed");
  if (name.empty()) throw checkpoint_error(ctx + ": empty dataset name");
  for (int64_t d : shape) {
    if (d < 0) throw checkpoint_error(ctx + ": negative dimension in shape " + shape_str(shape));
  }
  const size_t n = element_count(shape);
  if (n > 0 && data == nullptr) throw checkpoint_error(ctx + ": null data pointer");
  if (link_exists(file_.get(), name)) throw checkpoint_error(ctx + ": it already exists");

  std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Handle space(shape.empty() ? NUPIPE_H5_MSG(H5Screate(H5S_SCALAR), ctx)
                               : NUPIPE_H5_MSG(H5Screate_simple(static_cast<int>(dims.size()),
                                                                dims.data(), nullptr),
                                               ctx),
                 H5Sclose);
  H5Handle lcpl(NUPIPE_H5_MSG(H5Pcreate(H5P_LINK_CREATE), ctx), H5Pclose);
  NUPIPE_H5_MSG(H5Pset_create_intermediate_group(lcpl.get(), 1), ctx);
  H5Handle dset(NUPIPE_H5_MSG(H5Dcreate2(file_.get(), name.c_str(), file_type, space.get(),
                                         lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                              ctx),
                H5Dclose);
  if (n > 0) {
    NUPIPE_H5_MSG(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), ctx);
  }
}

void H5TensorWriter::write_attr(const std::string& key, hid_t file_type, hid_t space,
                                hid_t mem_type, const void* value) {
  const std::string ctx = "writing attribute " + q(key) + " to " + q(path_);
  if (root_.get() < 0) throw checkpoint_error(ctx + ": the file was already closed");
  if (key.empty()) throw checkpoint_error(ctx + ": empty attribute name");
  if (NUPIPE_H5_MSG(H5Aexists(root_.get(), key.c_str()), ctx) > 0) {
    NUPIPE_H5_MSG(H5Adelete(root_.get(), key.c_str()), ctx);
  }
  H5Handle a(
      NUPIPE_H5_MSG(
          H5Acreate2(root_.get(), key.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT), ctx),
      H5Aclose);
  NUPIPE_H5_MSG(H5Awrite(a.get(), mem_type, value), ctx);
}

void H5TensorWriter::attr(const std::string& key, double v) {
  H5Handle space(NUPIPE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  write_attr(key, H5T_IEEE_F64LE, space.get(), H5T_NATIVE_DOUBLE, &v);
}

void H5TensorWriter::attr(const std::string& key, int64_t v) {
  H5Handle space(NUPIPE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  write_attr(key, H5T_STD_I64LE, space.get(), H5T_NATIVE_INT64, &v);
}

void H5TensorWriter::attr(const std::string& key, const std::string& v) {
  // A variable-length UTF-8 string: what h5py writes for a str, and reads back as one.
  H5Handle type(NUPIPE_H5(H5Tcopy(H5T_C_S1)), H5Tclose);
  NUPIPE_H5(H5Tset_size(type.get(), H5T_VARIABLE));
  NUPIPE_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  H5Handle space(NUPIPE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  const char* ptr = v.c_str();
  write_attr(key, type.get(), space.get(), type.get(), &ptr);
}

void H5TensorWriter::close() {
  open_.clear();
  root_.reset();
  if (file_.get() < 0) return;
  // Released first: a failing flush still reaches the close, which is collective in parallel
  // mode, so every rank makes the same HDF5 calls whatever the flush did on any of them.
  const hid_t file = file_.release();
  const herr_t flushed = parallel_ ? H5Fflush(file, H5F_SCOPE_GLOBAL) : 0;  // MPI_File_sync
  const std::string flush_error = flushed < 0 ? h5_error_stack() : std::string();
  NUPIPE_H5_MSG(H5Fclose(file), "closing (flushing) " + q(path_));
  if (flushed < 0) {
    throw checkpoint_error("flushing " + q(path_) + " to disk failed: " + flush_error,
                           "check free space and the filesystem; nothing was committed");
  }
}

}  // namespace nupipe::checkpoint
