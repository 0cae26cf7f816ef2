// test_communicator.cpp: MpiCommunicator against the arithmetic each collective must produce,
// chunked paths, point-to-point patterns of the pipeline, Request lifetime, bytes accounting.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "parallel/comm/mpi_communicator.h"
#include "runtime/error.h"

namespace nupipe::parallel {
namespace {

// Chunk limits to run every collective under: MPI's own (one call) and tiny ones that split
// even these small buffers into many calls, the path of counts above INT_MAX.
const int64_t kChunks[] = {INT_MAX, 3, 1};

TEST(Communicator, AllReduceFloat) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    std::vector<float> data(10);
    for (int i = 0; i < 10; ++i) data[i] = 100.0f * r + i;
    comm.all_reduce_sum(data.data(), 10);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(data[i], 100.0f * s * (s - 1) / 2 + s * i) << "i=" << i << " chunk=" << chunk;
    }
  }
}

TEST(Communicator, AllReduceDoubleKeepsDoublePrecision) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    // 1e10 + small integers: exact in double, not in float.
    std::vector<double> data(5);
    for (int i = 0; i < 5; ++i) data[i] = 1e10 + r + i;
    comm.all_reduce_sum(data.data(), 5);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(data[i], s * 1e10 + s * (s - 1) / 2.0 + s * i) << "i=" << i << " chunk=" << chunk;
    }
  }
}

TEST(Communicator, ReduceScatterCountNotDivisible) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    for (int count : {7, 1}) {
      std::vector<float> send(s * count), recv(count, -1.0f);
      for (int b = 0; b < s; ++b) {
        for (int j = 0; j < count; ++j) send[b * count + j] = 1000.0f * r + 10.0f * b + j;
      }
      comm.reduce_scatter_sum(send.data(), recv.data(), count);
      for (int j = 0; j < count; ++j) {
        EXPECT_EQ(recv[j], 1000.0f * s * (s - 1) / 2 + s * (10.0f * r + j))
            << "j=" << j << " count=" << count << " chunk=" << chunk;
      }
    }
  }
}

TEST(Communicator, AllGatherCountNotDivisibleAndInPlace) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  const int count = 7;
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    std::vector<float> send(count), recv(s * count, -1.0f);
    for (int j = 0; j < count; ++j) send[j] = 10.0f * r + j;
    comm.all_gather(send.data(), recv.data(), count);
    for (int b = 0; b < s; ++b) {
      for (int j = 0; j < count; ++j) {
        EXPECT_EQ(recv[b * count + j], 10.0f * b + j) << "b=" << b << " chunk=" << chunk;
      }
    }
    // In place: this rank's block already sits in recv.
    std::vector<float> full(s * count, -1.0f);
    for (int j = 0; j < count; ++j) full[r * count + j] = 10.0f * r + j + 0.5f;
    comm.all_gather(full.data() + r * count, full.data(), count);
    for (int b = 0; b < s; ++b) {
      for (int j = 0; j < count; ++j) {
        EXPECT_EQ(full[b * count + j], 10.0f * b + j + 0.5f) << "b=" << b << " chunk=" << chunk;
      }
    }
  }
}

TEST(Communicator, BroadcastFromEveryRoot) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    for (int root = 0; root < s; ++root) {
      std::vector<float> data(10);
      for (int i = 0; i < 10; ++i) data[i] = 100.0f * r + i;
      comm.broadcast(data.data(), 10, root);
      for (int i = 0; i < 10; ++i) EXPECT_EQ(data[i], 100.0f * root + i) << "root=" << root;
    }
  }
}

TEST(Communicator, RefusesBadArgumentsLocally) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  std::vector<float> buf(4 * s + 4);
  // reduce_scatter with recv inside send.
  EXPECT_THROW(comm.reduce_scatter_sum(buf.data() + 1, buf.data() + 1, 1), Error);
  // all_gather with send overlapping recv away from this rank's block.
  EXPECT_THROW(comm.all_gather(buf.data() + r * 2 + 1, buf.data(), 2), Error);
  EXPECT_THROW(comm.broadcast(buf.data(), 1, s), Error);
  EXPECT_THROW(comm.broadcast(buf.data(), 1, -1), Error);
  EXPECT_THROW(comm.all_reduce_sum(buf.data(), -1), Error);
  EXPECT_THROW(comm.isend(buf.data(), 1, s, 0), Error);
  EXPECT_THROW(comm.irecv(buf.data(), 1, 0, -1), Error);
  EXPECT_THROW(comm.set_chunk_elements(0), Error);
}

TEST(Communicator, RingExchange) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  if (s < 2) {
    GTEST_SKIP() << "needs 2 ranks";
  }
  const int next = (r + 1) % s, prev = (r + s - 1) % s;
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    std::vector<float> out(10), in(10, -1.0f);
    for (int i = 0; i < 10; ++i) out[i] = 100.0f * r + i;
    Request recv = comm.irecv(in.data(), 10, prev, 3);
    Request send = comm.isend(out.data(), 10, next, 3);
    EXPECT_TRUE(recv.pending());
    recv.wait();
    send.wait();
    EXPECT_FALSE(recv.pending());
    for (int i = 0; i < 10; ++i) EXPECT_EQ(in[i], 100.0f * prev + i) << "chunk=" << chunk;
  }
}

// The 1F1B steady state: a middle stage sends activations forward and gradients backward,
// posting both sends first, then receiving each with irecv + wait. Messages are large enough
// (4 MiB) for MPI's rendezvous protocol: were isend blocking, every rank would sit in its
// send and this would hang (ctest's timeout turns that into a failure).
TEST(Communicator, BothDirectionsBetweenNeighboursDoesNotDeadlock) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  if (s < 2) {
    GTEST_SKIP() << "needs 2 ranks";
  }
  const int64_t n = int64_t{1} << 20;
  const int kFwd = 1, kBwd = 2;
  std::vector<float> act(n, 1.0f * r), grad(n, -1.0f * r);
  std::vector<float> act_in(n, -7.0f), grad_in(n, -7.0f);
  for (int step = 0; step < 3; ++step) {
    std::vector<Request> sends;
    if (r + 1 < s) sends.push_back(comm.isend(act.data(), n, r + 1, kFwd));
    if (r > 0) sends.push_back(comm.isend(grad.data(), n, r - 1, kBwd));
    if (r > 0) comm.irecv(act_in.data(), n, r - 1, kFwd).wait();
    if (r + 1 < s) comm.irecv(grad_in.data(), n, r + 1, kBwd).wait();
    for (Request& q : sends) q.wait();
    if (r > 0) {
      EXPECT_EQ(act_in.front(), 1.0f * (r - 1));
      EXPECT_EQ(act_in.back(), 1.0f * (r - 1));
    }
    if (r + 1 < s) {
      EXPECT_EQ(grad_in.front(), -1.0f * (r + 1));
      EXPECT_EQ(grad_in.back(), -1.0f * (r + 1));
    }
  }
  // Pairs (0,1), (2,3)...: each sends to the other first, then receives.
  const int partner = r ^ 1;
  if (partner < s) {
    std::fill(act_in.begin(), act_in.end(), -7.0f);
    Request send = comm.isend(act.data(), n, partner, kFwd);
    comm.irecv(act_in.data(), n, partner, kFwd).wait();
    send.wait();
    EXPECT_EQ(act_in[n / 2], 1.0f * partner);
  }
}

TEST(Communicator, RequestDestructorWaitsAndMoveKeepsTheOperation) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  if (s < 2) {
    GTEST_SKIP() << "needs 2 ranks";
  }
  const int next = (r + 1) % s, prev = (r + s - 1) % s;
  EXPECT_FALSE(Request().pending());
  std::vector<float> out(8, 1.0f * r), in(8, -1.0f);
  {
    std::vector<Request> requests;
    requests.push_back(comm.irecv(in.data(), 8, prev, 5));
    requests.push_back(comm.isend(out.data(), 8, next, 5));
    Request moved = std::move(requests[0]);
    EXPECT_FALSE(requests[0].pending());
    EXPECT_TRUE(moved.pending());
  }  // destructors wait: the data must be there now
  for (float v : in) EXPECT_EQ(v, 1.0f * prev);
  // Move-assigning over a pending request completes it first.
  std::fill(in.begin(), in.end(), -1.0f);
  Request a = comm.irecv(in.data(), 4, prev, 6);
  Request send_a = comm.isend(out.data(), 4, next, 6);
  std::vector<float> in2(4, -1.0f);
  Request send_b = comm.isend(out.data(), 4, next, 7);
  a = comm.irecv(in2.data(), 4, prev, 7);
  EXPECT_EQ(in[3], 1.0f * prev);
  a.wait();
  EXPECT_EQ(in2[3], 1.0f * prev);
}

// A Request destroyed while an exception unwinds cancels its receive instead of waiting for a
// message that never comes (a failing rank must not hang).
TEST(Communicator, RequestCancelsItsReceiveDuringUnwinding) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  if (s < 2) {
    GTEST_SKIP() << "needs 2 ranks";
  }
  std::vector<float> buf(4, 0.0f);
  if (r == 0) {
    EXPECT_THROW(
        {
          Request never = comm.irecv(buf.data(), 4, 1, 11);  // rank 1 sends nothing
          throw Error(ExitCode::internal, "simulated failure");
        },
        Error);
  }
  comm.barrier();
}

TEST(Communicator, ReceivingFewerElementsThanExpectedIsAnError) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  if (s < 2) {
    GTEST_SKIP() << "needs 2 ranks";
  }
  std::vector<float> buf(10, 0.0f);
  if (r == 0) {
    comm.isend(buf.data(), 5, 1, 9).wait();
  } else if (r == 1) {
    Request recv = comm.irecv(buf.data(), 10, 0, 9);
    EXPECT_THROW(recv.wait(), Error);
  }
  comm.barrier();
}

TEST(Communicator, BytesSentFollowsTheRingConvention) {
  MpiCommunicator comm;
  const int s = comm.size(), r = comm.rank();
  std::vector<float> f(4 * s * 10), g(4 * s * 10);
  std::vector<double> d(10);
  // Expected per call for this size: {all_reduce 10 floats, all_reduce 10 doubles,
  // reduce_scatter 3/rank, all_gather 3/rank, broadcast 5 (root), isend 7}.
  struct Expect {
    int64_t ar_f, ar_d, rs, ag, bc_root, send;
  };
  Expect e{};
  if (s == 4) e = {60, 120, 36, 36, 20, 28};  // 2*3/4*40, 2*3/4*80, 3*3*4, 3*3*4, 5*4, 7*4
  if (s == 2) e = {40, 80, 12, 12, 20, 28};
  if (s != 1 && s != 2 && s != 4) {
    GTEST_SKIP() << "expectations written for 1, 2 and 4 ranks";
  }
  for (int64_t chunk : kChunks) {
    comm.set_chunk_elements(chunk);
    comm.reset_bytes_sent();
    EXPECT_EQ(comm.bytes_sent(), 0);
    comm.all_reduce_sum(f.data(), 10);
    EXPECT_EQ(comm.bytes_sent(), e.ar_f);
    comm.reset_bytes_sent();
    comm.all_reduce_sum(d.data(), 10);
    EXPECT_EQ(comm.bytes_sent(), e.ar_d);
    comm.reset_bytes_sent();
    comm.reduce_scatter_sum(f.data(), g.data(), 3);
    EXPECT_EQ(comm.bytes_sent(), e.rs);
    comm.reset_bytes_sent();
    comm.all_gather(f.data(), g.data(), 3);
    EXPECT_EQ(comm.bytes_sent(), e.ag);
    comm.reset_bytes_sent();
    comm.broadcast(f.data(), 5, s - 1);
    EXPECT_EQ(comm.bytes_sent(), r == s - 1 ? e.bc_root : 0);
    comm.reset_bytes_sent();
    comm.barrier();
    EXPECT_EQ(comm.bytes_sent(), 0);
    if (s > 1) {
      Request recv = comm.irecv(g.data(), 7, (r + s - 1) % s, 0);
      comm.isend(f.data(), 7, (r + 1) % s, 0).wait();
      recv.wait();
      EXPECT_EQ(comm.bytes_sent(), e.send);  // the receive adds nothing
    }
    // Accumulates until reset.
    comm.reset_bytes_sent();
    comm.all_reduce_sum(f.data(), 10);
    comm.all_gather(f.data(), g.data(), 3);
    EXPECT_EQ(comm.bytes_sent(), e.ar_f + e.ag);
  }
}

// A group of one, on every rank (a split by rank under -np 4; the world under -np 1): each
// collective is a copy or a no-op and nothing is sent.
void expect_single_rank_semantics(Communicator& one) {
  ASSERT_EQ(one.size(), 1);
  ASSERT_EQ(one.rank(), 0);
  std::vector<float> a = {1, 2, 3};
  std::vector<double> d = {1.5, 2.5};
  one.all_reduce_sum(a.data(), 3);
  one.all_reduce_sum(d.data(), 2);
  EXPECT_EQ(a, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(d, (std::vector<double>{1.5, 2.5}));
  std::vector<float> out(3, 0.0f);
  one.reduce_scatter_sum(a.data(), out.data(), 3);
  EXPECT_EQ(out, a);
  std::fill(out.begin(), out.end(), 0.0f);
  one.all_gather(a.data(), out.data(), 3);
  EXPECT_EQ(out, a);
  one.all_gather(out.data(), out.data(), 3);  // in place
  EXPECT_EQ(out, a);
  one.broadcast(a.data(), 3, 0);
  EXPECT_EQ(a, (std::vector<float>{1, 2, 3}));
  one.barrier();
  EXPECT_EQ(one.bytes_sent(), 0);
}

TEST(Communicator, SingleRankGroupsAreCopiesAndNoOps) {
  MpiCommunicator world;
  auto self = MpiCommunicator::split(world, world.rank(), 0);
  ASSERT_NE(self, nullptr);
  expect_single_rank_semantics(*self);
  if (world.size() == 1) expect_single_rank_semantics(world);
}

TEST(Communicator, SplitOrdersByKeyAndUndefinedGivesNull) {
  MpiCommunicator world;
  const int s = world.size(), r = world.rank();
  // Everyone in one group, ranks reversed.
  auto reversed = MpiCommunicator::split(world, 0, s - 1 - r);
  ASSERT_NE(reversed, nullptr);
  EXPECT_EQ(reversed->size(), s);
  EXPECT_EQ(reversed->rank(), s - 1 - r);
  // Only even world ranks join.
  auto even = MpiCommunicator::split(world, r % 2 == 0 ? 0 : MPI_UNDEFINED, r);
  EXPECT_EQ(even == nullptr, r % 2 == 1);
  if (even) {
    EXPECT_EQ(even->size(), (s + 1) / 2);
    EXPECT_EQ(even->rank(), r / 2);
    float v = static_cast<float>(r);
    even->all_reduce_sum(&v, 1);
    float expected = 0.0f;
    for (int q = 0; q < s; q += 2) expected += q;
    EXPECT_EQ(v, expected);
  }
  EXPECT_THROW(MpiCommunicator::split(world, -5, 0), Error);
}

}  // namespace
}  // namespace nupipe::parallel
