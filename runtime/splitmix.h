// splitmix.h: splitmix64 (Steele, Lea, Flood 2014), the one integer mixer behind every seeded
// draw of the runtime (the synthetic corpus, the training batches' order, sampling). Its
// conversions are fully specified, so every platform draws the same numbers (std::
// distributions are implementation-defined).
#pragma once

#include <cstdint>

namespace nupipe::runtime {

// The splitmix64 finalizer: a bijective 64-bit mix. Chained over a tuple such as (seed, step,
// sample) it is a counter-based generator: any draw is computable on its own.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The sequential splitmix64 generator: the n-th draw is mix64(seed + n * golden ratio).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    const uint64_t z = mix64(state_);
    state_ += 0x9e3779b97f4a7c15ULL;
    return z;
  }
  // Uniform in [0, 1): 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in the open interval (0, 1): 53 random bits, centred in their cell.
  double uniform_open() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  // Uniform integer in [0, n) by a 64x64 -> 128-bit multiply (Lemire, without rejection; the
  // bias is below n / 2^64).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace nupipe::runtime
