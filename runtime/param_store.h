// param_store.h: named parameter tensors in one flat buffer, with a matching flat gradient
// buffer. Specs carry init and weight-decay flags; offsets are what ZeRO shards cut.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/backend.h"
#include "runtime/tensor.h"

namespace nupipe::runtime {

enum class Init { normal, zeros, ones };

struct TensorSpec {
  std::string name;    // global name, e.g. "blocks.7.attn.qkv.weight"
  Shape shape;
  Init init = Init::normal;
  float init_std = 0.0f;
  bool decay = false;  // AdamW weight decay applies (matrices yes; biases, LayerNorm no)
  // A copy of a tensor another stage owns (a tied token table on the last stage of a
  // pipeline): kept equal to the owner's by the optimizer, saved and counted by the owner.
  bool tied_copy = false;
  int64_t offset = 0;  // elements into the flat buffer; set by ParamStore
  int64_t numel() const { return runtime::numel(shape); }
};

// The part of one tensor that falls into a range of the flat buffer (a ZeRO shard):
// elements [begin, end) of the flat buffer, begin - spec->offset elements into the tensor.
struct SpecPiece {
  const TensorSpec* spec = nullptr;
  int64_t begin = 0;
  int64_t end = 0;
  int64_t numel() const { return end - begin; }
};

class ParamStore {
 public:
  // The flat buffers hold the tensors and then zeros up to the smallest multiple of `pad_to`
  // (ZeRO-1 pads to the data degree so equal shards cut it). The padding is in no tensor: it
  // is never updated and its gradient stays zero. The parameters are held in `dtype` (the
  // compute copy: f32, or bf16 with the fp32 master weights in the optimizer); the gradients
  // are fp32.
  ParamStore(Backend& backend, std::vector<TensorSpec> specs, int64_t pad_to = 1,
             DType dtype = DType::f32);

  // Deterministic: each tensor draws from its own stream keyed by (seed, name), so values do
  // not depend on which other tensors this store (or this stage) holds. Rounded to the
  // store's dtype.
  void initialize(uint64_t seed);
  // The fp32 initial values of flat elements [begin, end) (0 in the padding): what
  // initialize() rounds, and what fp32 master weights start from.
  std::vector<float> initial_values(uint64_t seed, int64_t begin, int64_t end) const;
  void zero_grads();

  const std::vector<TensorSpec>& specs() const { return specs_; }
  const TensorSpec& spec(const std::string& name) const;
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  Tensor param(const std::string& name) const;
  Tensor grad(const std::string& name) const;
  DType dtype() const { return params_.dtype(); }
  // The flat buffers, padded_numel() elements each: the tensors, then zeros.
  const Tensor& flat_params() const { return params_; }
  const Tensor& flat_grads() const { return grads_; }
  int64_t numel() const { return numel_; }  // parameters (the specs' elements)
  int64_t padded_numel() const { return params_.numel(); }

  // The pieces of tensors inside the flat range [begin, end), in offset order (the padding is
  // in none of them).
  std::vector<SpecPiece> pieces(int64_t begin, int64_t end) const;
  Backend& backend() const { return backend_; }

 private:
  Backend& backend_;
  std::vector<TensorSpec> specs_;
  std::unordered_map<std::string, size_t> index_;
  int64_t numel_ = 0;
  Tensor params_;  // padded_numel() elements
  Tensor grads_;
};

// N(0, std) values from a stream keyed by (seed, key): splitmix64 + Box-Muller, fully
// specified so results are identical on every platform.
void fill_normal(std::vector<float>& out, uint64_t seed, const std::string& key, float std);

}  // namespace nupipe::runtime
