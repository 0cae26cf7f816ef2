// onednn_gemm.cpp: the oneDNN matmul primitives behind CpuBackend's bf16 products, their cache
// and the accounted scratchpad arena (runtime/cpu/onednn_gemm.h).
#include "runtime/cpu/onednn_gemm.h"

#include <omp.h>

#include <array>
#include <cstring>
#include <dnnl.hpp>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "runtime/backend.h"

namespace nupipe::runtime::cpu {

namespace {

using dnnl::memory;
using Dims = memory::dims;

memory::data_type dnnl_type(DType d) {
  return d == DType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

}  // namespace

// The primitive cache's types, named (not anonymous) because OnednnGemm::Impl holds them.
namespace onednn_cache {

using dnnl::memory;

// Everything a primitive is specialised for, as one array of integers (hashed and compared
// whole; alpha and beta by their bits).
struct Key {
  std::array<int64_t, 17> v{};
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (int64_t x : k.v) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

struct Entry {
  bool ok = false;
  dnnl::matmul prim;
  memory::desc src, wei, bias, dst, scratch;
  size_t scratch_bytes = 0;
  std::string impl;
};

}  // namespace onednn_cache

namespace {

using onednn_cache::Entry;
using onednn_cache::Key;
using onednn_cache::KeyHash;

int64_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

Key make_key(const MatmulDesc& d, int nthr) {
  Key k;
  k.v = {d.M,  d.N,  d.K,  d.batch, d.lda, d.ldb, d.ldc, d.sa, d.sb, d.sc,
         d.ta, d.tb, float_bits(d.alpha), float_bits(d.beta), static_cast<int64_t>(d.c),
         d.bias ? 1 + static_cast<int64_t>(d.bias_dtype) : 0, nthr};
  return k;
}

// Row-major [M,K] (or its transpose stored [K,M]) with row stride ld, batch stride s.
memory::desc matrix(int64_t batch, int64_t rows, int64_t cols, bool trans, int64_t ld,
                    int64_t stride, DType dt) {
  const Dims strides2 = trans ? Dims{1, ld} : Dims{ld, 1};
  if (batch == 1) return memory::desc({rows, cols}, dnnl_type(dt), strides2);
  return memory::desc({batch, rows, cols}, dnnl_type(dt), Dims{stride, strides2[0], strides2[1]});
}

}  // namespace

struct OnednnGemm::Impl {
  Backend& accounting;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::vector<std::unique_ptr<dnnl::stream>> streams;  // one per OpenMP thread number
  std::unordered_map<Key, Entry, KeyHash> cache;
  std::set<std::string> impls;
  int64_t refusals = 0;
  char* arena = nullptr;
  mutable std::mutex mu;

  explicit Impl(Backend& b) : accounting(b) {}
  ~Impl() {
    if (arena) accounting.release(arena, static_cast<size_t>(kArenaBytes), MemTag::workspace);
  }

  // The primitive for d at the calling thread's thread count (created on first use).
  const Entry& entry(const MatmulDesc& d, int nthr) {
    const Key key = make_key(d, nthr);
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    Entry e;
    try {
      e.src = matrix(d.batch, d.M, d.K, d.ta, d.lda, d.sa, DType::bf16);
      e.wei = matrix(d.batch, d.K, d.N, d.tb, d.ldb, d.sb, DType::bf16);
      e.dst = matrix(d.batch, d.M, d.N, false, d.ldc, d.sc, d.c);
      if (d.bias) {
        e.bias = d.batch == 1 ? memory::desc({1, d.N}, dnnl_type(d.bias_dtype), Dims{d.N, 1})
                              : memory::desc({1, 1, d.N}, dnnl_type(d.bias_dtype),
                                             Dims{d.N, d.N, 1});
      }
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (d.alpha != 1.0f) attr.set_output_scales(0, {d.alpha});
      if (d.beta != 0.0f) {
        dnnl::post_ops po;
        po.append_sum(d.beta);
        attr.set_post_ops(po);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e.src, e.wei, e.bias, e.dst),
                                            attr, engine);
      e.scratch = pd.scratchpad_desc();
      e.scratch_bytes = e.scratch.get_size();
      e.impl = pd.impl_info_str();
      e.prim = dnnl::matmul(pd);
      e.ok = true;
      impls.insert(e.impl);
    } catch (const dnnl::error&) {
      e.ok = false;  // no primitive for this combination on this CPU (or under the ISA cap)
    }
    return cache.emplace(key, std::move(e)).first->second;
  }

  void ensure_arena() {
    std::lock_guard<std::mutex> lock(mu);
    if (!arena) {
      arena = static_cast<char*>(
          accounting.allocate(static_cast<size_t>(kArenaBytes), MemTag::workspace));
    }
  }

  dnnl::stream& stream(int thread) {
    std::lock_guard<std::mutex> lock(mu);
    if (static_cast<int>(streams.size()) <= thread) streams.resize(thread + 1);
    if (!streams[thread]) streams[thread] = std::make_unique<dnnl::stream>(engine);
    return *streams[thread];
  }
};

OnednnGemm::OnednnGemm(Backend& accounting) : impl_(std::make_unique<Impl>(accounting)) {}
OnednnGemm::~OnednnGemm() = default;

bool OnednnGemm::run(const MatmulDesc& d, const void* A, const void* B, void* C,
                     const void* bias) {
  if (d.M == 0 || d.N == 0 || d.batch == 0) return true;
  impl_->ensure_arena();  // at the first bf16 product, whichever path computes it
  if (!native_bf16() || d.K == 0 || (d.bias && d.alpha != 1.0f)) {
    return false;  // the caller's fp32 path
  }
  // oneDNN partitions a primitive for omp_get_max_threads() threads and, inside a parallel
  // region, runs it on one: the caller there has set its own thread count to 1.
  const int nthr = omp_get_max_threads();
  const Entry& e = impl_->entry(d, nthr);
  const int team = omp_in_parallel() ? omp_get_num_threads() : 1;
  const int me = omp_in_parallel() ? omp_get_thread_num() : 0;
  const int64_t slice = kArenaBytes / team / 64 * 64;
  if (!e.ok || static_cast<int64_t>(e.scratch_bytes) > slice || (team > 1 && nthr != 1)) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    ++impl_->refusals;
    return false;
  }
  const dnnl::engine& eng = impl_->engine;
  memory src(e.src, eng, const_cast<void*>(A)), wei(e.wei, eng, const_cast<void*>(B)),
      dst(e.dst, eng, C), scratch(e.scratch, eng, impl_->arena + me * slice);
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src},
                                          {DNNL_ARG_WEIGHTS, wei},
                                          {DNNL_ARG_DST, dst},
                                          {DNNL_ARG_SCRATCHPAD, scratch}};
  if (d.bias) args.emplace(DNNL_ARG_BIAS, memory(e.bias, eng, const_cast<void*>(bias)));
  dnnl::stream& s = impl_->stream(me);
  e.prim.execute(s, args);
  s.wait();
  return true;
}

// Without bf16 instructions oneDNN emulates them (gemm:jit on AVX512_CORE ran 2.4x slower than
// sgemm on the widened operands here) or has no bf16 matmul at all (AVX2).
bool OnednnGemm::native_bf16() {
  static const bool native = [] {
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return native;
}

std::string OnednnGemm::probe() {
  if (!native_bf16()) return std::string();
  MatmulDesc d;
  d.tb = true;
  d.M = 256;
  d.N = d.K = 768;
  d.lda = d.ldb = d.ldc = 768;
  d.c = DType::bf16;
  const Entry& e = impl_->entry(d, omp_get_max_threads());
  return e.ok ? e.impl : std::string();
}

std::string OnednnGemm::kernels() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::string s;
  for (const std::string& i : impl_->impls) s += (s.empty() ? "" : ", ") + i;
  return s;
}

int64_t OnednnGemm::refusals() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->refusals;
}

int64_t OnednnGemm::cached() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return static_cast<int64_t>(impl_->cache.size());
}

std::string OnednnGemm::version() {
  const dnnl_version_t* v = dnnl::version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch);
}

std::string OnednnGemm::isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace nupipe::runtime::cpu
