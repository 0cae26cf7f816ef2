// test_staged_communicator.cpp: StagedCommunicator (device tensors through host buffers and
// MPI) against the arithmetic each collective must produce. The "device" is host memory that
// holds every byte XOR-scrambled: only the backend's copy_to_host / copy_from_host see the
// real values, so a path that handed device memory to MPI directly, or skipped a copy back,
// would produce wrong numbers here.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/staged_communicator.h"
#include "runtime/cpu/cpu_backend.h"

namespace nupipe::parallel {
namespace {

class ScrambledDevice final : public runtime::CpuBackend {
 public:
  static constexpr unsigned char kKey = 0x5A;
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < bytes; ++i) d[i] = s[i] ^ kKey;
    ++copies;
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < bytes; ++i) d[i] = s[i] ^ kKey;
    ++copies;
  }
  int copies = 0;
};

// A device buffer of T (scrambled), written and read through the device's copies.
template <typename T>
struct DeviceBuffer {
  ScrambledDevice& dev;
  std::vector<T> raw;
  DeviceBuffer(ScrambledDevice& d, const std::vector<T>& values) : dev(d), raw(values.size()) {
    dev.copy_from_host(raw.data(), values.data(), values.size() * sizeof(T));
  }
  std::vector<T> read() const {
    std::vector<T> out(raw.size());
    dev.copy_to_host(out.data(), raw.data(), raw.size() * sizeof(T));
    return out;
  }
  T* ptr() { return raw.data(); }
};

struct Fixture {
  MpiCommunicator host;
  ScrambledDevice dev;
  StagedCommunicator comm{host, dev};
};

TEST(StagedCommunicator, CollectivesThroughHostBuffers) {
  Fixture f;
  StagedCommunicator& c = f.comm;
  const int s = c.size(), r = c.rank();
  ASSERT_EQ(s, f.host.size());
  ASSERT_EQ(r, f.host.rank());

  std::vector<float> x(10);
  for (int i = 0; i < 10; ++i) x[i] = 100.0f * r + i;
  DeviceBuffer<float> ar(f.dev, x);
  c.all_reduce_sum(ar.ptr(), 10);
  const std::vector<float> got = ar.read();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(got[i], 100.0f * s * (s - 1) / 2 + s * i) << i;

  DeviceBuffer<double> ad(f.dev, std::vector<double>(5, 1e10 + r));
  c.all_reduce_sum(ad.ptr(), 5);
  for (double v : ad.read()) EXPECT_EQ(v, s * 1e10 + s * (s - 1) / 2.0);

  const int count = 7;
  std::vector<float> send(s * count);
  for (int b = 0; b < s; ++b) {
    for (int j = 0; j < count; ++j) send[b * count + j] = 1000.0f * r + 10.0f * b + j;
  }
  DeviceBuffer<float> rs_send(f.dev, send), rs_recv(f.dev, std::vector<float>(count, -1.0f));
  c.reduce_scatter_sum(rs_send.ptr(), rs_recv.ptr(), count);
  const std::vector<float> rs = rs_recv.read();
  for (int j = 0; j < count; ++j) {
    EXPECT_EQ(rs[j], 1000.0f * s * (s - 1) / 2 + s * (10.0f * r + j)) << j;
  }

  const int root = s - 1;
  DeviceBuffer<float> bc(f.dev, std::vector<float>(4, r == root ? 42.0f : -1.0f));
  c.broadcast(bc.ptr(), 4, root);
  for (float v : bc.read()) EXPECT_EQ(v, 42.0f);
}

TEST(StagedCommunicator, AllGatherInPlaceAndInBf16) {
  Fixture f;
  StagedCommunicator& c = f.comm;
  const int s = c.size(), r = c.rank();
  const int count = 3;
  // ZeRO's in-place pattern, fp32.
  std::vector<float> whole(s * count, -1.0f);
  for (int j = 0; j < count; ++j) whole[r * count + j] = 10.0f * r + j;
  DeviceBuffer<float> g(f.dev, whole);
  c.all_gather(g.ptr() + r * count, g.ptr(), count);
  const std::vector<float> got = g.read();
  for (int b = 0; b < s; ++b) {
    for (int j = 0; j < count; ++j) EXPECT_EQ(got[b * count + j], 10.0f * b + j);
  }
  // bf16 bit patterns, out of place.
  std::vector<uint16_t> mine(count);
  for (int j = 0; j < count; ++j) mine[j] = static_cast<uint16_t>(0x3F80 + 16 * r + j);
  DeviceBuffer<uint16_t> src(f.dev, mine), dst(f.dev, std::vector<uint16_t>(s * count, 0));
  c.all_gather(runtime::ConstDevPtr{src.ptr(), runtime::DType::bf16},
               runtime::DevPtr{dst.ptr(), runtime::DType::bf16}, count);
  const std::vector<uint16_t> all = dst.read();
  for (int b = 0; b < s; ++b) {
    for (int j = 0; j < count; ++j) {
      EXPECT_EQ(all[b * count + j], static_cast<uint16_t>(0x3F80 + 16 * b + j));
    }
  }
}

// The pipeline's pattern: sends posted first (their device buffers overwritten at once, since
// the send copied them out), then each receive waited for.
TEST(StagedCommunicator, PointToPointBothDirections) {
  Fixture f;
  StagedCommunicator& c = f.comm;
  const int s = c.size(), r = c.rank();
  if (s < 2) GTEST_SKIP() << "needs 2 ranks";
  const int64_t n = int64_t{1} << 18;
  DeviceBuffer<float> act(f.dev, std::vector<float>(n, 1.0f * r));
  DeviceBuffer<float> grad(f.dev, std::vector<float>(n, -1.0f * r));
  DeviceBuffer<float> act_in(f.dev, std::vector<float>(n, -7.0f));
  DeviceBuffer<float> grad_in(f.dev, std::vector<float>(n, -7.0f));
  std::vector<Request> sends;
  if (r + 1 < s) sends.push_back(c.isend(act.ptr(), n, r + 1, 1));
  if (r > 0) sends.push_back(c.isend(grad.ptr(), n, r - 1, 2));
  act.raw.assign(n, 0);  // the device buffer is free once isend returns
  grad.raw.assign(n, 0);
  if (r > 0) c.irecv(act_in.ptr(), n, r - 1, 1).wait();
  if (r + 1 < s) c.irecv(grad_in.ptr(), n, r + 1, 2).wait();
  for (Request& q : sends) q.wait();
  if (r > 0) {
    const std::vector<float> a = act_in.read();
    EXPECT_EQ(a.front(), 1.0f * (r - 1));
    EXPECT_EQ(a.back(), 1.0f * (r - 1));
  }
  if (r + 1 < s) {
    const std::vector<float> g = grad_in.read();
    EXPECT_EQ(g.front(), -1.0f * (r + 1));
    EXPECT_EQ(g.back(), -1.0f * (r + 1));
  }
  // bf16 on the wire as 2-byte elements.
  const int next = (r + 1) % s, prev = (r + s - 1) % s;
  DeviceBuffer<uint16_t> out(f.dev, std::vector<uint16_t>(5, static_cast<uint16_t>(r + 1)));
  DeviceBuffer<uint16_t> in(f.dev, std::vector<uint16_t>(5, 0));
  Request recv = c.irecv(runtime::DevPtr{in.ptr(), runtime::DType::bf16}, 5, prev, 3);
  c.isend(runtime::ConstDevPtr{out.ptr(), runtime::DType::bf16}, 5, next, 3).wait();
  recv.wait();
  for (uint16_t v : in.read()) EXPECT_EQ(v, static_cast<uint16_t>(prev + 1));
}

// The bytes-on-the-wire figure is the direct communicator's for the same calls.
TEST(StagedCommunicator, BytesSentEqualTheDirectCommunicators) {
  Fixture f;
  MpiCommunicator direct;
  const int s = f.comm.size(), r = f.comm.rank();
  std::vector<float> a(4 * s * 10, 1.0f), b(4 * s * 10), ha(a), hb(b);
  DeviceBuffer<float> da(f.dev, a), db(f.dev, b);
  auto both = [&](auto&& on_staged, auto&& on_direct) {
    f.comm.reset_bytes_sent();
    direct.reset_bytes_sent();
    on_staged();
    on_direct();
    EXPECT_EQ(f.comm.bytes_sent(), direct.bytes_sent());
  };
  both([&] { f.comm.all_reduce_sum(da.ptr(), 10); }, [&] { direct.all_reduce_sum(ha.data(), 10); });
  both([&] { f.comm.reduce_scatter_sum(da.ptr(), db.ptr(), 3); },
       [&] { direct.reduce_scatter_sum(ha.data(), hb.data(), 3); });
  both([&] { f.comm.all_gather(da.ptr(), db.ptr(), 3); },
       [&] { direct.all_gather(ha.data(), hb.data(), 3); });
  both([&] { f.comm.broadcast(da.ptr(), 5, s - 1); },
       [&] { direct.broadcast(ha.data(), 5, s - 1); });
  if (s > 1) {
    both(
        [&] {
          Request q = f.comm.irecv(db.ptr(), 7, (r + s - 1) % s, 0);
          f.comm.isend(da.ptr(), 7, (r + 1) % s, 0).wait();
          q.wait();
        },
        [&] {
          Request q = direct.irecv(hb.data(), 7, (r + s - 1) % s, 0);
          direct.isend(ha.data(), 7, (r + 1) % s, 0).wait();
          q.wait();
        });
  }
  EXPECT_GT(f.dev.copies, 0);
}

}  // namespace
}  // namespace nupipe::parallel
