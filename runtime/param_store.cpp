// param_store.cpp: flat parameter/gradient buffers, named views and deterministic init.
#include "runtime/param_store.h"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"

namespace nupipe::runtime {

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
double unit_open(uint64_t bits) {  // (0, 1)
  return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
}  // namespace

void fill_normal(std::vector<float>& out, uint64_t seed, const std::string& key, float std) {
  uint64_t state = seed ^ fnv1a(key);
  for (size_t i = 0; i < out.size(); i += 2) {
    const double u1 = unit_open(splitmix64(state)), u2 = unit_open(splitmix64(state));
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(std * r * std::cos(2.0 * M_PI * u2));
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(std * r * std::sin(2.0 * M_PI * u2));
  }
}

ParamStore::ParamStore(Backend& backend, std::vector<TensorSpec> specs, int64_t pad_to,
                       DType dtype)
    : backend_(backend), specs_(std::move(specs)) {
  NUPIPE_CHECK(pad_to >= 1, "ParamStore pad_to = " + std::to_string(pad_to));
  int64_t offset = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    NUPIPE_CHECK(index_.emplace(specs_[i].name, i).second, "duplicate tensor " + specs_[i].name);
    specs_[i].offset = offset;
    offset += specs_[i].numel();
  }
  numel_ = offset;
  const int64_t padded = (numel_ + pad_to - 1) / pad_to * pad_to;
  NUPIPE_CHECK(dtype == DType::f32 || dtype == DType::bf16,
               std::string("parameters in ") + dtype_name(dtype));
  params_ = Tensor::zeros(backend_, {padded}, dtype, MemTag::params);
  grads_ = Tensor::zeros(backend_, {padded}, DType::f32, MemTag::grads);
}

std::vector<SpecPiece> ParamStore::pieces(int64_t begin, int64_t end) const {
  std::vector<SpecPiece> out;
  for (const TensorSpec& s : specs_) {
    const int64_t lo = std::max(begin, s.offset), hi = std::min(end, s.offset + s.numel());
    if (lo < hi) out.push_back({&s, lo, hi});
  }
  return out;
}

const TensorSpec& ParamStore::spec(const std::string& name) const {
  auto it = index_.find(name);
  NUPIPE_CHECK(it != index_.end(), "no parameter named " + name);
  return specs_[it->second];
}

Tensor ParamStore::param(const std::string& name) const {
  const TensorSpec& s = spec(name);
  return params_.view(s.offset, s.shape);
}

Tensor ParamStore::grad(const std::string& name) const {
  const TensorSpec& s = spec(name);
  return grads_.view(s.offset, s.shape);
}

std::vector<float> ParamStore::initial_values(uint64_t seed, int64_t begin, int64_t end) const {
  NUPIPE_CHECK(0 <= begin && begin <= end && end <= padded_numel(), "initial_values range");
  std::vector<float> out(static_cast<size_t>(end - begin), 0.0f);
  for (const SpecPiece& p : pieces(begin, end)) {
    const TensorSpec& s = *p.spec;
    std::vector<float> values(s.numel(), s.init == Init::ones ? 1.0f : 0.0f);
    if (s.init == Init::normal) fill_normal(values, seed, s.name, s.init_std);
    std::copy(values.begin() + (p.begin - s.offset), values.begin() + (p.end - s.offset),
              out.begin() + (p.begin - begin));
  }
  return out;
}

void ParamStore::initialize(uint64_t seed) { from_host(params_, initial_values(seed, 0, padded_numel())); }

void ParamStore::zero_grads() { backend_.fill_zero(grads_.f32(), grads_.bytes()); }

}  // namespace nupipe::runtime
