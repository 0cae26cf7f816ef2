// communicator.h: the collective interface every process group speaks (sums only), the RAII
// Request handle of a non-blocking send or receive, and the bytes-on-the-wire accounting.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>

#include "runtime/dtype.h"

namespace nupipe::parallel {

// Whether byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte: the collectives'
// overlap rules (all_gather in place, reduce_scatter's disjoint buffers).
inline bool buffers_overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + static_cast<std::uintptr_t>(b_bytes) &&
         pb < pa + static_cast<std::uintptr_t>(a_bytes);
}

// A pending non-blocking operation. wait() completes it; the destructor waits if nobody did,
// so an operation never outlives its handle (and its buffer is never written after the handle
// is gone). A default-constructed Request is already complete. Movable, not copyable.
//
// Destroyed during stack unwinding (an exception is in flight), the handle cancels what the
// backend can cancel (MPI: receives) before waiting, so a rank that is failing does not block
// on a message that may never come. Errors in a destructor are printed to stderr, not thrown.
class Request {
 public:
  // Backend side of a request (MPI requests, a CUDA event...).
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual void wait() = 0;             // completes the operation; throws nupipe::Error
    virtual void cancel_and_wait() = 0;  // unwinding path: cancel what can be, wait the rest
  };

  Request() = default;
  explicit Request(std::unique_ptr<Impl> impl)
      : impl_(std::move(impl)), uncaught_at_start_(std::uncaught_exceptions()) {}
  Request(Request&& other) noexcept = default;
  Request& operator=(Request&& other) {  // completes this request's own operation first
    if (this != &other) {
      wait();
      impl_ = std::move(other.impl_);
      uncaught_at_start_ = other.uncaught_at_start_;
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() {
    if (!impl_) return;
    try {
      if (std::uncaught_exceptions() > uncaught_at_start_) {
        impl_->cancel_and_wait();
      } else {
        impl_->wait();
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nupipe: a pending send/receive failed as its Request was destroyed: "
                   "%s\n", e.what());
    }
  }

  // Completes the operation (no-op when already complete). If it throws, the operation is
  // abandoned: the error is fatal to the job (exit code 5).
  void wait() {
    if (!impl_) return;
    std::unique_ptr<Impl> impl = std::move(impl_);
    impl->wait();
  }
  bool pending() const { return impl_ != nullptr; }

 private:
  std::unique_ptr<Impl> impl_;
  int uncaught_at_start_ = 0;  // std::uncaught_exceptions() when the operation was posted
};

// A group of ranks and the collectives among them. Buffers are device pointers (host memory
// with the cpu backend). Every rank of the group must make the same collective calls in the
// same order with the same counts and root. Not thread-safe: one thread drives a communicator.
//
// With size() == 1 every collective is a copy or a no-op and sends nothing.
//
// Counts are int64_t; implementations whose library counts in int (MPI) split larger
// buffers into chunks, so counts above INT_MAX work.
class Communicator {
 public:
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[i] becomes the sum over ranks of data[i].
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  virtual void all_reduce_sum(double* data, int64_t n) = 0;
  // send holds size() blocks of count_per_rank; rank r receives block r summed over ranks.
  // send and recv must not overlap.
  virtual void reduce_scatter_sum(const float* send, float* recv, int64_t count_per_rank) = 0;
  // recv (size() * count_per_rank) receives every rank's send block in rank order. In place
  // when send == recv + rank() * count_per_rank (the ZeRO pattern); no other overlap allowed.
  // Any element type (both of one), e.g. ZeRO-1's bf16 parameters.
  virtual void all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                          int64_t count_per_rank) = 0;
  void all_gather(const float* send, float* recv, int64_t count_per_rank) {
    all_gather(runtime::f32_ptr(send), runtime::f32_ptr(recv), count_per_rank);
  }
  // data on every rank becomes root's data.
  virtual void broadcast(float* data, int64_t n, int root) = 0;
  // Point-to-point with another rank of the group; 0 <= tag <= 32767 is always valid. Messages
  // between the same pair with the same tag match in the order they were posted.
  // Any element type, the same on both sides (the pipeline's bf16 hidden states).
  virtual Request isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) = 0;
  virtual Request irecv(runtime::DevPtr data, int64_t n, int peer, int tag) = 0;
  Request isend(const float* data, int64_t n, int peer, int tag) {
    return isend(runtime::f32_ptr(data), n, peer, tag);
  }
  Request irecv(float* data, int64_t n, int peer, int tag) {
    return irecv(runtime::f32_ptr(data), n, peer, tag);
  }
  virtual void barrier() = 0;

  // Bytes this rank put on the wire since construction or reset_bytes_sent(), counted by the
  // standard ring algorithms whatever the library really does, so the figure depends only on
  // the calls made and can be checked against ZeRO's traffic formulas. With s = size() and B
  // the bytes of the call's buffer (n * element size):
  //   all_reduce_sum      floor(2 (s-1) B / s)   (ring reduce-scatter then ring all-gather)
  //   reduce_scatter_sum  (s-1)/s * total = (s-1) * count_per_rank * 4
  //   all_gather          (s-1)/s * total = (s-1) * count_per_rank * 4
  //   broadcast           B on the root, 0 elsewhere
  //   isend               B (0 for a send to oneself); irecv and barrier: 0
  // With s == 1 nothing is counted.
  int64_t bytes_sent() const { return bytes_sent_; }
  void reset_bytes_sent() { bytes_sent_ = 0; }

 protected:
  // The convention above, for implementations to call once per operation.
  void count_all_reduce(int64_t bytes) {
    if (size() > 1) bytes_sent_ += 2 * (size() - 1) * bytes / size();
  }
  void count_reduce_scatter(int64_t bytes_per_rank) {
    bytes_sent_ += (size() - 1) * bytes_per_rank;
  }
  void count_all_gather(int64_t bytes_per_rank) { bytes_sent_ += (size() - 1) * bytes_per_rank; }
  void count_broadcast(int64_t bytes, int root) {
    if (size() > 1 && rank() == root) bytes_sent_ += bytes;
  }
  void count_send(int64_t bytes, int peer) {
    if (peer != rank()) bytes_sent_ += bytes;
  }

 private:
  int64_t bytes_sent_ = 0;
};

}  // namespace nupipe::parallel
