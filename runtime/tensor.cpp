// tensor.cpp: storage lifetime (allocation through the backend, with accounting) and views.
#include "runtime/tensor.h"

#include <sstream>

#include "runtime/backend.h"
#include "runtime/check.h"

namespace nupipe::runtime {

size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return sizeof(float);
    case DType::bf16: return sizeof(uint16_t);
    case DType::i32: return sizeof(int32_t);
  }
  NUPIPE_CHECK(false, "unknown DType " + std::to_string(static_cast<int>(d)));
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
  }
  return "?";
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

Storage::Storage(Backend& b, size_t n, MemTag t) : backend(b), ptr(nullptr), bytes(n), tag(t) {
  ptr = backend.allocate(bytes, tag);
}

Storage::~Storage() { backend.release(ptr, bytes, tag); }

Tensor Tensor::empty(Backend& backend, Shape shape, DType dtype, MemTag tag) {
  for (int64_t d : shape) NUPIPE_CHECK(d >= 0, "negative dimension in " + shape_str(shape));
  Tensor t;
  t.storage_ = std::make_shared<Storage>(backend, runtime::numel(shape) * dtype_size(dtype), tag);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

void Tensor::retag(MemTag tag) const {
  NUPIPE_CHECK(defined(), "retag of an undefined tensor");
  if (storage_->tag == tag) return;
  storage_->backend.memory().on_retag(storage_->tag, tag, storage_->bytes);
  storage_->tag = tag;
}

Tensor Tensor::zeros(Backend& backend, Shape shape, DType dtype, MemTag tag) {
  Tensor t = empty(backend, std::move(shape), dtype, tag);
  backend.fill_zero(t.storage_->ptr, t.storage_->bytes);
  return t;
}

Tensor Tensor::view(int64_t offset, Shape shape) const {
  NUPIPE_CHECK(defined(), "view of an undefined tensor");
  NUPIPE_CHECK(offset >= 0 && offset + runtime::numel(shape) <= numel(),
               "view " + shape_str(shape) + " at " + std::to_string(offset) +
                   " out of range of " + shape_str(shape_));
  Tensor t = *this;
  t.offset_ = offset_ + offset;
  t.shape_ = std::move(shape);
  return t;
}

float* Tensor::f32() const {
  NUPIPE_CHECK(defined() && dtype_ == DType::f32, "f32() on a tensor that is not f32");
  return static_cast<float*>(storage_->ptr) + offset_;
}

uint16_t* Tensor::bf16() const {
  NUPIPE_CHECK(defined() && dtype_ == DType::bf16, "bf16() on a tensor that is not bf16");
  return static_cast<uint16_t*>(storage_->ptr) + offset_;
}

DevPtr Tensor::data() const {
  NUPIPE_CHECK(defined(), "data() of an undefined tensor");
  return DevPtr{storage_->ptr, dtype_} + offset_;
}

int32_t* Tensor::i32() const {
  NUPIPE_CHECK(defined() && dtype_ == DType::i32, "i32() on a tensor that is not i32");
  return static_cast<int32_t*>(storage_->ptr) + offset_;
}

}  // namespace nupipe::runtime
