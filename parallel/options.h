// options.h: parallel layout options ([parallel] in the config). This version trains on a
// single rank; pipeline and data degrees other than 1 are refused by the config validation.
#pragma once

namespace nupipe::parallel {

struct Options {
  int pipeline = 1;  // pipeline stages
  int data = 1;      // data-parallel replicas per stage
};

}  // namespace nupipe::parallel
