// mpi_communicator.cpp: MpiCommunicator: MPI collectives and non-blocking point-to-point,
// counts above the chunk limit (INT_MAX) split into several MPI calls.
#include "parallel/comm/mpi_communicator.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "parallel/session/mpi_check.h"
#include "runtime/check.h"

namespace nupipe::parallel {
namespace {

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

// The MPI type of a buffer's elements (bf16 moves as 16-bit words: nothing is reduced).
MPI_Datatype mpi_type_of(runtime::DType t) {
  switch (t) {
    case runtime::DType::f32: return MPI_FLOAT;
    case runtime::DType::bf16: return MPI_UINT16_T;
    case runtime::DType::i32: return MPI_INT32_T;
  }
  return MPI_DATATYPE_NULL;
}

// Calls fn(offset, length) over [0, n) in pieces of at most chunk elements (length fits int).
template <typename Fn>
void for_each_chunk(int64_t n, int64_t chunk, Fn&& fn) {
  for (int64_t off = 0; off < n; off += chunk) fn(off, static_cast<int>(std::min(chunk, n - off)));
}

// The MPI requests of one isend/irecv (one per chunk).
class MpiRequest final : public Request::Impl {
 public:
  MpiRequest(bool receive, int peer, int tag, Watchdog* watchdog, const std::string* group,
             int peer_world, MPI_Datatype type)
      : receive_(receive), peer_(peer), tag_(tag), watchdog_(watchdog), group_(group),
        peer_world_(peer_world), type_(type) {}

  void add(MPI_Request r, int count) {
    requests_.push_back(r);
    counts_.push_back(count);
  }

  void wait() override {
    Watchdog::Scope scope(watchdog_, receive_ ? "receive" : "send", group_, nullptr,
                          peer_world_);
    std::vector<MPI_Status> status(requests_.size());
    NUPIPE_MPI(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), status.data()));
    if (!receive_) return;
    for (size_t i = 0; i < status.size(); ++i) {
      int got = 0;
      NUPIPE_MPI(MPI_Get_count(&status[i], type_, &got));
      NUPIPE_CHECK(got == counts_[i],
                   "received " + std::to_string(got) + " elements from rank " +
                       std::to_string(peer_) + " (tag " + std::to_string(tag_) + ") where " +
                       std::to_string(counts_[i]) +
                       " were expected: sender and receiver disagree on the message size");
    }
  }

  void cancel_and_wait() override {
    // Only receives: Open MPI cannot cancel sends, and a receive is what could wait forever
    // on a peer that will not send. Errors are ignored: this rank is already failing.
    if (receive_) {
      for (MPI_Request& r : requests_) {
        if (r != MPI_REQUEST_NULL) MPI_Cancel(&r);
      }
    }
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }

 private:
  bool receive_;
  int peer_, tag_;
  Watchdog* watchdog_;
  const std::string* group_;
  int peer_world_;
  MPI_Datatype type_;
  std::vector<MPI_Request> requests_;
  std::vector<int> counts_;
};

}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialized = 0;
  NUPIPE_MPI(MPI_Initialized(&initialized));
  NUPIPE_CHECK(initialized, "MPI is not initialised: create the parallel::World first");
  NUPIPE_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
  init_from_comm();
}

MpiCommunicator::MpiCommunicator(MPI_Comm adopted) : comm_(adopted) { init_from_comm(); }

void MpiCommunicator::init_from_comm() {
  try {
    // Errors come back as codes so NUPIPE_MPI can report them; MPI does not abort for us.
    NUPIPE_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    NUPIPE_MPI(MPI_Comm_rank(comm_, &rank_));
    NUPIPE_MPI(MPI_Comm_size(comm_, &size_));
    int* tag_ub = nullptr;
    int found = 0;
    NUPIPE_MPI(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &found));
    if (found && tag_ub != nullptr) tag_ub_ = *tag_ub;
    MPI_Group mine, world;
    NUPIPE_MPI(MPI_Comm_group(comm_, &mine));
    NUPIPE_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
    std::vector<int> ranks(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) ranks[r] = r;
    world_ranks_.resize(static_cast<size_t>(size_));
    NUPIPE_MPI(MPI_Group_translate_ranks(mine, size_, ranks.data(), world, world_ranks_.data()));
    MPI_Group_free(&mine);
    MPI_Group_free(&world);
  } catch (...) {
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);  // the destructor will not run
    throw;
  }
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ == MPI_COMM_NULL || comm_ == MPI_COMM_WORLD) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(const MpiCommunicator& parent, int color,
                                                        int key) {
  NUPIPE_CHECK(color >= 0 || color == MPI_UNDEFINED,
               "split color " + std::to_string(color) + " must be >= 0 or MPI_UNDEFINED");
  MPI_Comm out = MPI_COMM_NULL;
  NUPIPE_MPI(MPI_Comm_split(parent.comm_, color, key, &out));
  if (out == MPI_COMM_NULL) return nullptr;
  std::unique_ptr<MpiCommunicator> child(new MpiCommunicator(out));
  child->chunk_ = parent.chunk_;
  child->watchdog_ = parent.watchdog_;
  return child;
}

void MpiCommunicator::set_watchdog(Watchdog* watchdog, std::string name) {
  watchdog_ = watchdog;
  name_ = std::move(name);
}

void MpiCommunicator::set_chunk_elements(int64_t elements) {
  NUPIPE_CHECK(elements >= 1 && elements <= INT_MAX,
               "chunk of " + std::to_string(elements) + " elements: must be in [1, INT_MAX]");
  chunk_ = elements;
}

template <typename T>
void MpiCommunicator::all_reduce_impl(T* data, int64_t n) {
  NUPIPE_CHECK(n >= 0, "all_reduce_sum of " + std::to_string(n) + " elements");
  if (size_ == 1 || n == 0) return;
  NUPIPE_CHECK(data != nullptr, "all_reduce_sum on a null buffer");
  Watchdog::Scope scope(watchdog_, "all-reduce", &name_, &world_ranks_);
  for_each_chunk(n, chunk_, [&](int64_t off, int len) {
    NUPIPE_MPI(MPI_Allreduce(MPI_IN_PLACE, data + off, len, mpi_type<T>(), MPI_SUM, comm_));
  });
  count_all_reduce(n * static_cast<int64_t>(sizeof(T)));
}

void MpiCommunicator::all_reduce_sum(float* data, int64_t n) { all_reduce_impl(data, n); }
void MpiCommunicator::all_reduce_sum(double* data, int64_t n) { all_reduce_impl(data, n); }

void MpiCommunicator::reduce_scatter_sum(const float* send, float* recv, int64_t count_per_rank) {
  const int64_t count = count_per_rank;
  NUPIPE_CHECK(count >= 0, "reduce_scatter_sum of " + std::to_string(count) + " per rank");
  if (count == 0) return;
  const int64_t total = count * size_;
  NUPIPE_CHECK(send != nullptr && recv != nullptr, "reduce_scatter_sum on a null buffer");
  NUPIPE_CHECK(!buffers_overlap(send, total * 4, recv, count * 4),
               "reduce_scatter_sum: send and recv overlap; use a separate receive buffer");
  if (size_ == 1) {
    std::memcpy(recv, send, count * sizeof(float));
    return;
  }
  Watchdog::Scope scope(watchdog_, "reduce-scatter", &name_, &world_ranks_);
  if (total <= chunk_) {
    NUPIPE_MPI(MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                        comm_));
  } else {
    // The blocks of one chunk are strided in send, so each block is reduced to its owner.
    for (int root = 0; root < size_; ++root) {
      for_each_chunk(count, chunk_, [&](int64_t off, int len) {
        NUPIPE_MPI(MPI_Reduce(send + root * count + off, root == rank_ ? recv + off : nullptr,
                              len, MPI_FLOAT, MPI_SUM, root, comm_));
      });
    }
  }
  count_reduce_scatter(count * 4);
}

void MpiCommunicator::all_gather(runtime::ConstDevPtr send, runtime::DevPtr recv,
                                 int64_t count_per_rank) {
  const int64_t count = count_per_rank;
  NUPIPE_CHECK(count >= 0, "all_gather of " + std::to_string(count) + " per rank");
  NUPIPE_CHECK(send.dtype == recv.dtype, "all_gather between element types");
  if (count == 0) return;
  const int64_t total = count * size_, es = static_cast<int64_t>(runtime::dtype_size(recv.dtype));
  const MPI_Datatype type = mpi_type_of(recv.dtype);
  NUPIPE_CHECK(send.ptr != nullptr && recv.ptr != nullptr, "all_gather on a null buffer");
  const runtime::DevPtr mine = recv + rank_ * count;
  const bool in_place = send.ptr == mine.ptr;
  NUPIPE_CHECK(in_place || !buffers_overlap(send.ptr, count * es, recv.ptr, total * es),
               "all_gather: send overlaps recv without being this rank's block of it "
               "(in place means send == recv + rank() * count_per_rank)");
  if (size_ == 1) {
    if (!in_place) std::memcpy(recv.ptr, send.ptr, count * es);
    return;
  }
  Watchdog::Scope scope(watchdog_, "all-gather", &name_, &world_ranks_);
  if (total <= chunk_) {
    const int c = static_cast<int>(count);
    NUPIPE_MPI(MPI_Allgather(in_place ? MPI_IN_PLACE : send.ptr, c, type, recv.ptr, c, type,
                             comm_));
  } else {
    if (!in_place) std::memcpy(mine.ptr, send.ptr, count * es);
    for (int root = 0; root < size_; ++root) {
      for_each_chunk(count, chunk_, [&](int64_t off, int len) {
        NUPIPE_MPI(MPI_Bcast((recv + root * count + off).ptr, len, type, root, comm_));
      });
    }
  }
  count_all_gather(count * es);
}

void MpiCommunicator::broadcast(float* data, int64_t n, int root) {
  NUPIPE_CHECK(n >= 0, "broadcast of " + std::to_string(n) + " elements");
  NUPIPE_CHECK(root >= 0 && root < size_, "broadcast root " + std::to_string(root) +
                                              " outside a group of " + std::to_string(size_));
  if (size_ == 1 || n == 0) return;
  NUPIPE_CHECK(data != nullptr, "broadcast of a null buffer");
  Watchdog::Scope scope(watchdog_, "broadcast", &name_, &world_ranks_);
  for_each_chunk(n, chunk_, [&](int64_t off, int len) {
    NUPIPE_MPI(MPI_Bcast(data + off, len, MPI_FLOAT, root, comm_));
  });
  count_broadcast(n * 4, root);
}

void MpiCommunicator::check_p2p(int64_t n, int peer, int tag, const char* what) const {
  NUPIPE_CHECK(n >= 0, std::string(what) + " of " + std::to_string(n) + " elements");
  NUPIPE_CHECK(peer >= 0 && peer < size_, std::string(what) + " peer " + std::to_string(peer) +
                                              " outside a group of " + std::to_string(size_));
  NUPIPE_CHECK(tag >= 0 && tag <= tag_ub_, std::string(what) + " tag " + std::to_string(tag) +
                                               " outside [0, " + std::to_string(tag_ub_) + "]");
}

// A message of n elements goes as ceil(n / chunk) MPI messages (one when n == 0); MPI matches
// messages between a pair with one tag in order, so the receiver's chunks line up.
Request MpiCommunicator::isend(runtime::ConstDevPtr data, int64_t n, int peer, int tag) {
  check_p2p(n, peer, tag, "isend");
  const MPI_Datatype type = mpi_type_of(data.dtype);
  auto impl = std::make_unique<MpiRequest>(false, peer, tag, watchdog_, &name_,
                                           world_ranks_[static_cast<size_t>(peer)], type);
  MpiRequest* posted = impl.get();
  Request request(std::move(impl));  // waits (or cancels) what was posted if a post fails
  for_each_chunk(std::max<int64_t>(n, 1), chunk_, [&](int64_t off, int len) {
    MPI_Request r = MPI_REQUEST_NULL;
    if (n == 0) len = 0;
    NUPIPE_MPI(MPI_Isend((data + off).ptr, len, type, peer, tag, comm_, &r));
    posted->add(r, len);
  });
  count_send(n * static_cast<int64_t>(runtime::dtype_size(data.dtype)), peer);
  return request;
}

Request MpiCommunicator::irecv(runtime::DevPtr data, int64_t n, int peer, int tag) {
  check_p2p(n, peer, tag, "irecv");
  const MPI_Datatype type = mpi_type_of(data.dtype);
  auto impl = std::make_unique<MpiRequest>(true, peer, tag, watchdog_, &name_,
                                           world_ranks_[static_cast<size_t>(peer)], type);
  MpiRequest* posted = impl.get();
  Request request(std::move(impl));
  for_each_chunk(std::max<int64_t>(n, 1), chunk_, [&](int64_t off, int len) {
    MPI_Request r = MPI_REQUEST_NULL;
    if (n == 0) len = 0;
    NUPIPE_MPI(MPI_Irecv((data + off).ptr, len, type, peer, tag, comm_, &r));
    posted->add(r, len);
  });
  return request;
}

void MpiCommunicator::barrier() {
  if (size_ == 1) return;
  Watchdog::Scope scope(watchdog_, "barrier", &name_, &world_ranks_);
  NUPIPE_MPI(MPI_Barrier(comm_));
}

std::vector<std::string> MpiCommunicator::gather_text(const std::string& mine, int root) {
  NUPIPE_CHECK(root >= 0 && root < size_, "gather_text root " + std::to_string(root));
  NUPIPE_CHECK(mine.size() <= static_cast<size_t>(INT_MAX), "gather_text of over 2 GiB");
  if (size_ == 1) return {mine};
  Watchdog::Scope scope(watchdog_, "gather", &name_, &world_ranks_);
  const int len = static_cast<int>(mine.size());
  std::vector<int> lens(rank_ == root ? size_ : 0), displs;
  NUPIPE_MPI(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, comm_));
  std::string all;
  if (rank_ == root) {
    int64_t total = 0;
    for (int l : lens) displs.push_back(static_cast<int>(total)), total += l;
    NUPIPE_CHECK(total <= INT_MAX, "gather_text of over 2 GiB in all");
    all.resize(static_cast<size_t>(total));
  }
  NUPIPE_MPI(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                         MPI_CHAR, root, comm_));
  std::vector<std::string> out;
  for (size_t r = 0; r < lens.size(); ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

std::string MpiCommunicator::broadcast_text(const std::string& text, int root) {
  NUPIPE_CHECK(root >= 0 && root < size_, "broadcast_text root " + std::to_string(root));
  if (size_ == 1) return text;
  Watchdog::Scope scope(watchdog_, "broadcast", &name_, &world_ranks_);
  long long len = rank_ == root ? static_cast<long long>(text.size()) : 0;
  NUPIPE_MPI(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm_));
  std::string out = rank_ == root ? text : std::string(static_cast<size_t>(len), '\0');
  for_each_chunk(len, chunk_, [&](int64_t off, int n) {
    NUPIPE_MPI(MPI_Bcast(out.data() + off, n, MPI_CHAR, root, comm_));
  });
  return out;
}

}  // namespace nupipe::parallel
