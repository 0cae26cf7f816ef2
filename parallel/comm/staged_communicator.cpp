// staged_communicator.cpp: device buffers through host staging buffers and the host
// communicator's collectives.
#include "parallel/comm/staged_communicator.h"

#include <memory>
#include <utility>

#include "runtime/check.h"

namespace nupipe::parallel {

namespace {

size_t bytes_of(runtime::DType dtype, int64_t n) {
  return static_cast<size_t>(n) * runtime::dtype_size(dtype);
}

// A send's or receive's host buffer travels with its Request, so several can be in flight
// (the pipeline keeps a send pending while it receives).
class StagedRequest final : public Request::Impl {
 public:
  StagedRequest(std::vector<char> host, Request inner, runtime::Backend* device, void* dst)
      : host_(std::move(host)), inner_(std::move(inner)), device_(device), dst_(dst) {}
  void wait() override {
    inner_.wait();
    if (dst_ && !host_.empty()) device_->copy_from_host(dst_, host_.data(), host_.size());
    dst_ = nullptr;
  }
  void cancel_and_wait() override {
    // The unwinding path: let the host request cancel its receive (its destructor does, while
    // an exception is in flight); the device buffer is not written.
    dst_ = nullptr;
    Request dropped = std::move(inner_);
  }

 private:
  std::vector<char> host_;
  Request inner_;
  runtime::Backend* device_;
  void* dst_;
};

}  // namespace

StagedCommunicator::StagedCommunicator(Communicator& host, runtime::Backend& device)
    : host_(host), device_(device) {}

char* StagedCommunicator::staging(size_t bytes, int which) {
  std::vector<char>& b = buffer_[which];
  if (b.size() < bytes) b.resize(bytes);
  return b.data();
}

template <typename T>
void StagedCommunicator::all_reduce_staged(T* data, int64_t n) {
  if (size() == 1) return;  // a group of one: nothing to sum, nothing to copy
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  auto* h = reinterpret_cast<T*>(staging(bytes, 0));
  device_.copy_to_host(h, data, bytes);
  host_.all_reduce_sum(h, n);
  device_.copy_from_host(data, h, bytes);
  count_all_reduce(static_cast<int64_t>(bytes));
}

void StagedCommunicator::all_reduce_sum(float* data, int64_t n) { all_reduce_staged(data, n); }
void StagedCommunicator::all_reduce_sum(double* data, int64_t n) { all_reduce_staged(data, n); }

void StagedCommunicator::reduce_scatter_sum(const float* send, float* recv,
                                            int64_t count_per_rank) {
  const size_t block = bytes_of(runtime::DType::f32, count_per_rank);
  NUPIPE_CHECK(!buffers_overlap(send, static_cast<int64_t>(block) * size(), recv,
                                static_cast<int64_t>(block)),
               "reduce_scatter_sum: send and recv overlap");
  if (size() == 1) {  // on the device
    device_.copy(recv, send, block);
    return;
  }
  auto* hs = reinterpret_cast<float*>(staging(block * size(), 0));
  auto* hr = reinterpret_cast<float*>(staging(block, 1));
  device_.copy_to_host(hs, send, block * size());
  host_.reduce_scatter_sum(hs, hr, count_per_rank);
  device_.copy_from_host(recv, hr, block);
  count_reduce_scatter(static_cast<int64_t>(block));
}

void StagedCommunicator::all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                                    int64_t count_per_rank) {
  NUPIPE_CHECK(send.dtype == recv.dtype, "all_gather: send and recv differ in element type");
  const size_t block = bytes_of(send.dtype, count_per_rank);
  if (size() == 1) {
    if (send.ptr != recv.ptr) device_.copy(recv.ptr, send.ptr, block);
    return;
  }
  // One host buffer of size() blocks, this rank's block at its place: the host call then runs
  // in place, whether or not the device call was.
  char* h = staging(block * size(), 0);
  char* mine = h + block * rank();
  device_.copy_to_host(mine, send.ptr, block);
  host_.all_gather(runtime::ConstDevPtr{mine, send.dtype}, runtime::DevPtr{h, recv.dtype},
                   count_per_rank);
  device_.copy_from_host(recv.ptr, h, block * size());
  count_all_gather(static_cast<int64_t>(block));
}

void StagedCommunicator::broadcast(float* data, int64_t n, int root) {
  if (size() == 1) return;
  const size_t bytes = bytes_of(runtime::DType::f32, n);
  auto* h = reinterpret_cast<float*>(staging(bytes, 0));
  if (rank() == root) device_.copy_to_host(h, data, bytes);
  host_.broadcast(h, n, root);
  device_.copy_from_host(data, h, bytes);
  count_broadcast(static_cast<int64_t>(bytes), root);
}

Request StagedCommunicator::isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) {
  std::vector<char> h(bytes_of(data.dtype, n));
  if (!h.empty()) device_.copy_to_host(h.data(), data.ptr, h.size());
  Request inner = host_.isend(runtime::ConstDevPtr{h.data(), data.dtype}, n, peer, tag);
  count_send(static_cast<int64_t>(h.size()), peer);
  return Request(std::make_unique<StagedRequest>(std::move(h), std::move(inner), nullptr,
                                                 nullptr));
}

Request StagedCommunicator::irecv(runtime::DevPtr data, int64_t n, int peer, int tag) {
  std::vector<char> h(bytes_of(data.dtype, n));
  Request inner = host_.irecv(runtime::DevPtr{h.data(), data.dtype}, n, peer, tag);
  // The vector's heap block does not move with the vector: the posted receive stays valid.
  return Request(std::make_unique<StagedRequest>(std::move(h), std::move(inner), &device_,
                                                 data.ptr));
}

}  // namespace nupipe::parallel
