// dataset_regions.h: the manifest's data regions against where state.h5 keeps each dataset:
// every dataset's file offset and extent must be exactly the regions named after it, so that
// the bytes HDF5 reads for a tensor are the bytes checksummed under that tensor's name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"

namespace nupipe::checkpoint {

// A data region's name, "model/x [0, 4096)": the dataset and its elements [begin, end).
// False for anything else ("hdf5 metadata", or a malformed name).
bool parse_data_region(const std::string& what, std::string* dataset, int64_t* begin,
                       int64_t* end);

// Opens dir/state.h5 (its bytes must be proven intact first: HDF5 parses its metadata here)
// and compares each dataset's storage (contiguous, its byte offset and extent from
// H5Dget_offset / H5Dget_storage_size) with the manifest's regions of that dataset: they
// must tile its elements, each at the file offset those elements have. Reads no element.
// One line per problem, naming the dataset and both byte ranges; empty when they agree.
std::vector<std::string> check_dataset_regions(const std::string& dir, const Manifest& manifest);

}  // namespace nupipe::checkpoint
