// h5_common.h: what the HDF5 tensor writer and reader share (checkpoint/h5_tensors.cpp):
// names and shapes for messages, link checks and flat hyperslab selections.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/h5_tensors.h"

namespace nupipe::checkpoint::h5 {

std::string q(const std::string& s);  // 's' quoted for messages
std::string shape_str(const std::vector<int64_t>& shape);
std::string dtype_str(hid_t type);  // "float32", "int64", "uint8", "string", ...
// True when every component of the '/'-separated `name` exists below `loc`, the ones before
// the last being groups.
bool link_exists(hid_t loc, const std::string& name);
size_t element_count(const std::vector<int64_t>& shape);
// The file dataspace of `dataset` with [begin, begin + n) of its flattening selected.
H5Handle flat_selection(hid_t dataset, int64_t begin, int64_t n, const std::string& ctx);

}  // namespace nupipe::checkpoint::h5
