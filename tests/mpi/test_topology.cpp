// test_topology.cpp: the pp x dp grid arithmetic, and ProcessGroups' communicators checked by
// all-gathering world ranks within each group, for every layout the world size allows.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/topology.h"
#include "runtime/error.h"

namespace nupipe::parallel {
namespace {

TEST(Topology, StageMajorGrid) {
  // (pp, dp) -> for each world rank its (stage, replica).
  const Topology t14{1, 4, 0}, t22{2, 2, 0}, t41{4, 1, 0};
  const std::pair<int, int> g14[] = {{0, 0}, {0, 1}, {0, 2}, {0, 3}};
  const std::pair<int, int> g22[] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
  const std::pair<int, int> g41[] = {{0, 0}, {1, 0}, {2, 0}, {3, 0}};
  for (auto [grid, expected] : {std::pair{t14, g14}, std::pair{t22, g22}, std::pair{t41, g41}}) {
    for (int rank = 0; rank < 4; ++rank) {
      Topology t = grid;
      t.rank = rank;
      SCOPED_TRACE(testing::Message()
                   << "pp=" << t.pipeline << " dp=" << t.data << " rank=" << rank);
      EXPECT_EQ(t.stage(), expected[rank].first);
      EXPECT_EQ(t.replica(), expected[rank].second);
      EXPECT_EQ(t.rank_of(t.stage(), t.replica()), rank);
      EXPECT_EQ(t.first_stage(), t.stage() == 0);
      EXPECT_EQ(t.last_stage(), t.stage() == t.pipeline - 1);
    }
  }
  const Topology t32{3, 2, 5};
  EXPECT_EQ(t32.stage(), 2);
  EXPECT_EQ(t32.replica(), 1);
  EXPECT_TRUE(t32.last_stage());
  EXPECT_FALSE(t32.first_stage());
  EXPECT_EQ(t32.rank_of(1, 0), 2);
  EXPECT_THROW(t32.rank_of(3, 0), Error);
  EXPECT_THROW(t32.rank_of(0, 2), Error);
  const Topology single{1, 1, 0};
  EXPECT_TRUE(single.first_stage() && single.last_stage());
}

// The world ranks of a group's members, in group-rank order, learnt through the group itself.
std::vector<int> members(Communicator& group, int world_rank) {
  const float me = static_cast<float>(world_rank);
  std::vector<float> all(group.size(), -1.0f);
  group.all_gather(&me, all.data(), 1);
  return std::vector<int>(all.begin(), all.end());
}

void check_layout(int pp, int dp) {
  SCOPED_TRACE(testing::Message() << "pp=" << pp << " dp=" << dp);
  ProcessGroups groups(pp, dp);
  const Topology& t = groups.topology();
  const int rank = groups.world().rank();
  EXPECT_EQ(t.pipeline, pp);
  EXPECT_EQ(t.data, dp);
  EXPECT_EQ(t.rank, rank);
  EXPECT_EQ(groups.world().size(), pp * dp);
  EXPECT_EQ(t.stage(), rank / dp);
  EXPECT_EQ(t.replica(), rank % dp);

  std::vector<int> world_ranks(pp * dp);
  for (int i = 0; i < pp * dp; ++i) world_ranks[i] = i;
  EXPECT_EQ(members(groups.world(), rank), world_ranks);

  Communicator& pipe = groups.pipeline();
  EXPECT_EQ(pipe.size(), pp);
  EXPECT_EQ(pipe.rank(), t.stage());
  std::vector<int> pipe_ranks;
  for (int s = 0; s < pp; ++s) pipe_ranks.push_back(t.rank_of(s, t.replica()));
  EXPECT_EQ(members(pipe, rank), pipe_ranks);

  Communicator& data = groups.data();
  EXPECT_EQ(data.size(), dp);
  EXPECT_EQ(data.rank(), t.replica());
  std::vector<int> data_ranks;
  for (int q = 0; q < dp; ++q) data_ranks.push_back(t.rank_of(t.stage(), q));
  EXPECT_EQ(members(data, rank), data_ranks);

  Communicator* emb = groups.embedding();
  const bool middle = !t.first_stage() && !t.last_stage();
  EXPECT_EQ(emb == nullptr, middle) << "stage " << t.stage();
  if (emb != nullptr) {
    std::vector<int> emb_ranks = {t.rank_of(0, t.replica())};
    if (pp > 1) emb_ranks.push_back(t.rank_of(pp - 1, t.replica()));
    EXPECT_EQ(emb->size(), static_cast<int>(emb_ranks.size()));
    EXPECT_EQ(emb->rank(), t.first_stage() ? 0 : 1);
    EXPECT_EQ(members(*emb, rank), emb_ranks);
  }
}

TEST(ProcessGroups, EveryLayoutOfTheWorld) {
  MpiCommunicator world;
  const int n = world.size();
  int layouts = 0;
  for (auto [pp, dp] : {std::pair{1, 4}, std::pair{2, 2}, std::pair{4, 1}, std::pair{1, 1},
                        std::pair{1, 2}, std::pair{2, 1}}) {
    if (pp * dp != n) continue;
    check_layout(pp, dp);
    ++layouts;
  }
  if (n == 4) {
    EXPECT_EQ(layouts, 3);
  }
  if (layouts == 0) {
    GTEST_SKIP() << "no layout listed for " << n << " ranks";
  }
}

TEST(ProcessGroups, RefusesDegreesThatDoNotMatchTheWorld) {
  MpiCommunicator world;
  EXPECT_THROW(ProcessGroups(world.size(), 2), Error);
  EXPECT_THROW(ProcessGroups(0, world.size()), Error);
}

}  // namespace
}  // namespace nupipe::parallel
