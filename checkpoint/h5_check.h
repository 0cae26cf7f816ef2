// h5_check.h: the HDF5 member of the checked-call macro family. NUPIPE_H5(call) evaluates an
// HDF5 call once, returns its result, and fails with ExitCode::checkpoint when it is negative.
#pragma once

#include <hdf5.h>

#include <string>

#include "runtime/check.h"

namespace nupipe::checkpoint {

inline constexpr const char* kH5Hint =
    "check that the path is a complete nupipe HDF5 file (h5dump -H FILE lists its contents), "
    "that it is readable and, when writing, that the disk is not full";

// HDF5 keeps a per-thread error stack. Its automatic printing is turned off by the file classes
// (h5_silence_errors) so that an error is reported once, here: the outermost and innermost
// entries of the stack become part of our message, and the stack is cleared.
inline std::string h5_error_stack() {
  struct Walk {
    std::string outer, inner;
    int n = 0;
  } walk;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto* w = static_cast<Walk*>(data);
        std::string entry = std::string(e->func_name ? e->func_name : "?") + ": " +
                            (e->desc ? e->desc : "");
        if (w->n++ == 0) w->outer = entry;
        w->inner = entry;
        return 0;
      },
      &walk);
  H5Eclear2(H5E_DEFAULT);
  if (walk.n == 0) return "no HDF5 error recorded";
  if (walk.n == 1) return walk.outer;
  return walk.outer + " <- " + walk.inner;
}

inline std::string h5_failure_detail(const std::string& context) {
  return "HDF5 call failed" + (context.empty() ? std::string() : " " + context) + ": " +
         h5_error_stack();
}

// Stops HDF5 from printing its error stack to stderr on every failed call (the default).
inline void h5_silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

}  // namespace nupipe::checkpoint

// NUPIPE_H5_MSG(call, context): `context` (a std::string, e.g. "writing 'model/x' to 'a.h5'")
// names what was being done; it is only built when the call fails.
#define NUPIPE_H5_MSG(call, context)                                                 \
  ([&]() {                                                                           \
    const auto nupipe_h5_result_ = (call);                                           \
    if (nupipe_h5_result_ < 0)                                                       \
      NUPIPE_FAIL(::nupipe::ExitCode::checkpoint, #call,                             \
                  ::nupipe::checkpoint::h5_failure_detail(context),                  \
                  ::nupipe::checkpoint::kH5Hint);                                    \
    return nupipe_h5_result_;                                                        \
  }())

#define NUPIPE_H5(call) NUPIPE_H5_MSG(call, ::std::string())
