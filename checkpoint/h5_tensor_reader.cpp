// h5_tensor_reader.cpp: H5TensorReader on the HDF5 C API (serial access): datasets, their
// storage, attributes and groups, every call checked through NUPIPE_H5.
#include "checkpoint/h5_tensors.h"
#include "checkpoint/h5_common.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <sstream>

#include "checkpoint/h5_check.h"

namespace nupipe::checkpoint {

using namespace h5;

// ---- H5TensorReader ------------------------------------------------------------------------

struct H5TensorReader::Typed {
  H5Handle dataset;
  std::vector<int64_t> shape;
  hid_t mem_type;
};

H5TensorReader::H5TensorReader(const std::string& path) : guard_(path), path_(path) {
  h5_silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw checkpoint_error("HDF5 file " + q(path) + " does not exist",
                           "check the path (and run.dir / checkpoint.dir in the config)");
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw checkpoint_error(q(path) + " is not an HDF5 file (or cannot be read)",
                           "check the path; a truncated or partly written file cannot be read");
  }
  file_ = H5Handle(
      NUPIPE_H5_MSG(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "opening " + q(path)),
      H5Fclose);
  root_ = H5Handle(
      NUPIPE_H5_MSG(H5Gopen2(file_.get(), "/", H5P_DEFAULT), "opening the root of " + q(path)),
      H5Gclose);
}

H5Handle H5TensorReader::open_dataset(const std::string& name) const {
  if (!has(name)) {
    throw checkpoint_error("dataset " + q(name) + " not found in " + q(path_),
                           "list the file's contents with `h5ls -r " + path_ +
                               "`; it may come from another model or nupipe version");
  }
  return H5Handle(NUPIPE_H5_MSG(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT),
                                "opening dataset " + q(name) + " in " + q(path_)),
                  H5Dclose);
}

H5TensorReader::Typed H5TensorReader::open_typed(const std::string& name, bool want_float) const {
  Typed t{open_dataset(name), {}, want_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32};
  const std::string ctx = "reading dataset " + q(name) + " from " + q(path_);
  H5Handle type(NUPIPE_H5_MSG(H5Dget_type(t.dataset.get()), ctx), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  const bool ok = want_float ? (cls == H5T_FLOAT && H5Tget_size(type.get()) == 4)
                             : (cls == H5T_INTEGER && H5Tget_size(type.get()) == 4 &&
                                H5Tget_sign(type.get()) == H5T_SGN_2);
  if (!ok) {
    throw checkpoint_error(ctx + ": it holds " + dtype_str(type.get()) + ", expected " +
                               (want_float ? "float32" : "int32"),
                           "the file was written with another dtype; convert it or use the "
                           "matching reader");
  }
  t.shape = shape_of(t.dataset.get(), name);
  return t;
}

void H5TensorReader::check_shape(const std::string& name, const std::vector<int64_t>& got,
                                 const std::vector<int64_t>& expect) const {
  if (got != expect) {
    throw checkpoint_error("dataset " + q(name) + " in " + q(path_) + " has shape " +
                               shape_str(got) + ", expected " + shape_str(expect),
                           "the file was written for a different model configuration; check "
                           "[model] against the file's attributes (h5dump -A " +
                               path_ + ")");
  }
}

std::vector<int64_t> H5TensorReader::shape(const std::string& name) const {
  return shape_of(open_dataset(name).get(), name);
}

std::vector<int64_t> H5TensorReader::shape_of(hid_t dataset, const std::string& name) const {
  const std::string ctx = "reading the shape of " + q(name) + " in " + q(path_);
  H5Handle space(NUPIPE_H5_MSG(H5Dget_space(dataset), ctx), H5Sclose);
  const int rank = NUPIPE_H5_MSG(H5Sget_simple_extent_ndims(space.get()), ctx);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) NUPIPE_H5_MSG(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), ctx);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void H5TensorReader::read_typed(const Typed& t, const std::string& name, void* out) const {
  if (element_count(t.shape) == 0) return;
  NUPIPE_H5_MSG(H5Dread(t.dataset.get(), t.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                "reading dataset " + q(name) + " from " + q(path_));
}

std::vector<float> H5TensorReader::read_f32(const std::string& name) const {
  Typed t = open_typed(name, true);
  std::vector<float> out(element_count(t.shape));
  read_typed(t, name, out.data());
  return out;
}

std::vector<int32_t> H5TensorReader::read_i32(const std::string& name) const {
  Typed t = open_typed(name, false);
  std::vector<int32_t> out(element_count(t.shape));
  read_typed(t, name, out.data());
  return out;
}

std::vector<float> H5TensorReader::read_f32(const std::string& name,
                                            const std::vector<int64_t>& expect) const {
  Typed t = open_typed(name, true);
  check_shape(name, t.shape, expect);
  std::vector<float> out(element_count(t.shape));
  read_typed(t, name, out.data());
  return out;
}

std::vector<int32_t> H5TensorReader::read_i32(const std::string& name,
                                              const std::vector<int64_t>& expect) const {
  Typed t = open_typed(name, false);
  check_shape(name, t.shape, expect);
  std::vector<int32_t> out(element_count(t.shape));
  read_typed(t, name, out.data());
  return out;
}

void H5TensorReader::read_into(const std::string& name, float* out,
                               const std::vector<int64_t>& expect) const {
  Typed t = open_typed(name, true);
  check_shape(name, t.shape, expect);
  read_typed(t, name, out);
}

void H5TensorReader::read_into(const std::string& name, int32_t* out,
                               const std::vector<int64_t>& expect) const {
  Typed t = open_typed(name, false);
  check_shape(name, t.shape, expect);
  read_typed(t, name, out);
}

void H5TensorReader::require_f32(const std::string& name,
                                 const std::vector<int64_t>& expect) const {
  check_shape(name, open_typed(name, true).shape, expect);
}

void H5TensorReader::read_range(const std::string& name, int64_t begin, float* out,
                                int64_t n) const {
  const std::string ctx = "reading elements [" + std::to_string(begin) + ", " +
                          std::to_string(begin + n) + ") of " + q(name) + " from " + q(path_);
  Typed t = open_typed(name, true);
  H5Handle file_space = flat_selection(t.dataset.get(), begin, n, ctx);
  if (n == 0) return;
  const hsize_t count = static_cast<hsize_t>(n);
  H5Handle mem_space(NUPIPE_H5_MSG(H5Screate_simple(1, &count, nullptr), ctx), H5Sclose);
  NUPIPE_H5_MSG(H5Dread(t.dataset.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(),
                        H5P_DEFAULT, out),
                ctx);
}

bool H5TensorReader::has(const std::string& name) const {
  if (name.empty() || !link_exists(file_.get(), name)) return false;
  H5Handle obj(NUPIPE_H5_MSG(H5Oopen(file_.get(), name.c_str(), H5P_DEFAULT),
                             "opening " + q(name) + " in " + q(path_)),
               H5Oclose);
  return H5Iget_type(obj.get()) == H5I_DATASET;
}

std::vector<std::string> H5TensorReader::datasets() const {
  std::vector<std::string> out;
  const std::function<void(const std::string&, int)> walk = [&](const std::string& group,
                                                                 int depth) {
    if (depth > 32) {
      throw checkpoint_error("groups of " + q(path_) + " are nested deeper than 32 below " +
                             q(group));
    }
    for (const std::string& name : list(group)) {
      const std::string full = group.empty() ? name : group + "/" + name;
      H5L_info_t link{};
      NUPIPE_H5_MSG(H5Lget_info(file_.get(), full.c_str(), &link, H5P_DEFAULT),
                    "looking up " + q(full) + " in " + q(path_));
      if (link.type != H5L_TYPE_HARD) {
        throw checkpoint_error(q(full) + " in " + q(path_) + " is a " +
                               (link.type == H5L_TYPE_SOFT       ? "soft"
                                : link.type == H5L_TYPE_EXTERNAL ? "external"
                                                                 : "user-defined") +
                               " link; nupipe checkpoints hold none");
      }
      if (has(full)) {
        out.push_back(full);
      } else {
        H5Handle obj(NUPIPE_H5_MSG(H5Oopen(file_.get(), full.c_str(), H5P_DEFAULT),
                                   "opening " + q(full) + " in " + q(path_)),
                     H5Oclose);
        if (H5Iget_type(obj.get()) == H5I_GROUP) walk(full, depth + 1);
      }
    }
  };
  walk("", 0);
  std::sort(out.begin(), out.end());
  return out;
}

H5TensorReader::Storage H5TensorReader::storage(const std::string& name) const {
  H5Handle dset = open_dataset(name);
  const std::string ctx = "reading where " + q(name) + " is stored in " + q(path_);
  Storage st;
  H5Handle dcpl(NUPIPE_H5_MSG(H5Dget_create_plist(dset.get()), ctx), H5Pclose);
  st.contiguous = NUPIPE_H5_MSG(H5Pget_layout(dcpl.get()), ctx) == H5D_CONTIGUOUS &&
                  NUPIPE_H5_MSG(H5Pget_external_count(dcpl.get()), ctx) == 0;
  const haddr_t offset = H5Dget_offset(dset.get());  // HADDR_UNDEF without raising an error
  H5Eclear2(H5E_DEFAULT);
  if (st.contiguous && offset != HADDR_UNDEF) st.offset = static_cast<int64_t>(offset);
  st.bytes = static_cast<int64_t>(H5Dget_storage_size(dset.get()));
  H5Handle type(NUPIPE_H5_MSG(H5Dget_type(dset.get()), ctx), H5Tclose);
  st.element_bytes = static_cast<int64_t>(H5Tget_size(type.get()));
  H5Handle space(NUPIPE_H5_MSG(H5Dget_space(dset.get()), ctx), H5Sclose);
  st.elements = static_cast<int64_t>(NUPIPE_H5_MSG(H5Sget_simple_extent_npoints(space.get()), ctx));
  return st;
}

bool H5TensorReader::has_attr(const std::string& key) const {
  return !key.empty() && NUPIPE_H5_MSG(H5Aexists(root_.get(), key.c_str()),
                                       "looking up attribute " + q(key) + " in " + q(path_)) > 0;
}

H5Handle H5TensorReader::open_attr(const std::string& key) const {
  if (!has_attr(key)) {
    throw checkpoint_error("attribute " + q(key) + " not found on the root of " + q(path_),
                           "list the attributes with `h5dump -A " + path_ + "`");
  }
  const std::string ctx = "reading attribute " + q(key) + " from " + q(path_);
  H5Handle a(NUPIPE_H5_MSG(H5Aopen(root_.get(), key.c_str(), H5P_DEFAULT), ctx), H5Aclose);
  H5Handle space(NUPIPE_H5_MSG(H5Aget_space(a.get()), ctx), H5Sclose);
  if (NUPIPE_H5_MSG(H5Sget_simple_extent_npoints(space.get()), ctx) != 1) {
    throw checkpoint_error(ctx + ": it is an array, expected a single value");
  }
  return a;
}

double H5TensorReader::attr_double(const std::string& key) const {
  H5Handle a = open_attr(key);
  const std::string ctx = "reading attribute " + q(key) + " from " + q(path_);
  H5Handle type(NUPIPE_H5_MSG(H5Aget_type(a.get()), ctx), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    throw checkpoint_error(ctx + ": it holds " + dtype_str(type.get()) + ", expected a number");
  }
  double v = 0;
  NUPIPE_H5_MSG(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), ctx);
  return v;
}

int64_t H5TensorReader::attr_int(const std::string& key) const {
  H5Handle a = open_attr(key);
  const std::string ctx = "reading attribute " + q(key) + " from " + q(path_);
  H5Handle type(NUPIPE_H5_MSG(H5Aget_type(a.get()), ctx), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER) {
    throw checkpoint_error(ctx + ": it holds " + dtype_str(type.get()) + ", expected an integer");
  }
  int64_t v = 0;
  NUPIPE_H5_MSG(H5Aread(a.get(), H5T_NATIVE_INT64, &v), ctx);
  return v;
}

std::string H5TensorReader::attr_string(const std::string& key) const {
  H5Handle a = open_attr(key);
  const std::string ctx = "reading attribute " + q(key) + " from " + q(path_);
  H5Handle type(NUPIPE_H5_MSG(H5Aget_type(a.get()), ctx), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw checkpoint_error(ctx + ": it holds " + dtype_str(type.get()) + ", expected a string");
  }
  // Read with the attribute's own string type: no character-set conversion is attempted.
  if (NUPIPE_H5_MSG(H5Tis_variable_str(type.get()), ctx) > 0) {
    char* s = nullptr;
    NUPIPE_H5_MSG(H5Aread(a.get(), type.get(), &s), ctx);
    std::string out = s ? s : "";
    if (s) H5free_memory(s);
    return out;
  }
  std::string buf(H5Tget_size(type.get()), '\0');
  NUPIPE_H5_MSG(H5Aread(a.get(), type.get(), buf.data()), ctx);
  buf.resize(std::min(buf.find('\0'), buf.size()));
  return buf;
}

std::vector<std::string> H5TensorReader::list(const std::string& group) const {
  const std::string g = group.empty() ? "/" : group;
  const std::string ctx = "listing group " + q(g) + " in " + q(path_);
  const bool is_root = g.find_first_not_of('/') == std::string::npos;
  if (!is_root) {
    bool is_group = link_exists(file_.get(), g);
    if (is_group) {
      H5Handle obj(NUPIPE_H5_MSG(H5Oopen(file_.get(), g.c_str(), H5P_DEFAULT), ctx), H5Oclose);
      is_group = H5Iget_type(obj.get()) == H5I_GROUP;
    }
    if (!is_group) throw checkpoint_error(ctx + ": no such group");
  }
  H5Handle gid(NUPIPE_H5_MSG(H5Gopen2(file_.get(), g.c_str(), H5P_DEFAULT), ctx), H5Gclose);
  H5G_info_t info;
  NUPIPE_H5_MSG(H5Gget_info(gid.get(), &info), ctx);
  std::vector<std::string> names;
  names.reserve(info.nlinks);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = NUPIPE_H5_MSG(
        H5Lget_name_by_idx(gid.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT),
        ctx);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    NUPIPE_H5_MSG(H5Lget_name_by_idx(gid.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                                     name.size(), H5P_DEFAULT),
                  ctx);
    name.resize(static_cast<size_t>(len));
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace nupipe::checkpoint
