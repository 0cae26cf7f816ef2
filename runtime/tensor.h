// tensor.h: a shaped, typed view of backend memory (no autograd). Storage is reference
// counted and returned to its backend, with its accounting tag, when the last view goes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/dtype.h"

namespace nupipe::runtime {

class Backend;

using Shape = std::vector<int64_t>;
int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);

// One allocation on one backend, counted under one tag.
struct Storage {
  Storage(Backend& backend, size_t bytes, MemTag tag);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Backend& backend;
  void* ptr;
  size_t bytes;
  MemTag tag;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory; zeros() also clears it.
  static Tensor empty(Backend& backend, Shape shape, DType dtype, MemTag tag);
  static Tensor zeros(Backend& backend, Shape shape, DType dtype, MemTag tag);

  // A view sharing storage: `count` elements starting `offset` elements into this tensor.
  Tensor view(int64_t offset, Shape shape) const;
  Tensor reshaped(Shape shape) const { return view(0, std::move(shape)); }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return runtime::numel(shape_); }
  size_t bytes() const { return numel() * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  MemTag tag() const { return storage_->tag; }
  Backend& backend() const { return storage_->backend; }
  // Counts the whole storage (this view's and every other view's) under `tag` from now on,
  // where it is then also released: memory kept past its first use changes what it is for.
  void retag(MemTag tag) const;

  // Device pointers (host memory on the cpu backend). Checked against the dtype.
  float* f32() const;
  int32_t* i32() const;
  uint16_t* bf16() const;
  // The typed pointer kernels take, whatever the dtype.
  DevPtr data() const;

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::f32;
};

}  // namespace nupipe::runtime
