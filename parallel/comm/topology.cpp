// topology.cpp: stage/replica arithmetic of the pp x dp grid and the MPI splits that build
// the pipeline, data and embedding groups.
#include "parallel/comm/topology.h"

#include <string>

#include "runtime/check.h"

namespace nupipe::parallel {

int Topology::stage() const { return rank / data; }
int Topology::replica() const { return rank % data; }

int Topology::rank_of(int stage, int replica) const {
  NUPIPE_CHECK(stage >= 0 && stage < pipeline && replica >= 0 && replica < data,
               "(stage " + std::to_string(stage) + ", replica " + std::to_string(replica) +
                   ") outside a " + std::to_string(pipeline) + " x " + std::to_string(data) +
                   " grid");
  return stage * data + replica;
}

bool Topology::first_stage() const { return stage() == 0; }
bool Topology::last_stage() const { return stage() == pipeline - 1; }

ProcessGroups::ProcessGroups(int pipeline, int data, Watchdog* watchdog) {
  world_ = std::make_unique<MpiCommunicator>();
  world_->set_watchdog(watchdog, "world");
  NUPIPE_CHECK(pipeline >= 1 && data >= 1 && pipeline * data == world_->size(),
               "parallel.pipeline (" + std::to_string(pipeline) + ") x parallel.data (" +
                   std::to_string(data) + ") must equal the world size (" +
                   std::to_string(world_->size()) + ")");
  topology_ = Topology{pipeline, data, world_->rank()};
  const int stage = topology_.stage(), replica = topology_.replica();
  // Every rank takes part in every split (MPI_Comm_split is collective over the world).
  pipeline_ = MpiCommunicator::split(*world_, replica, stage);
  data_ = MpiCommunicator::split(*world_, stage, replica);
  const bool ends = topology_.first_stage() || topology_.last_stage();
  embedding_ = MpiCommunicator::split(*world_, ends ? replica : MPI_UNDEFINED, stage);
  pipeline_->set_watchdog(watchdog, "pipeline group of replica " + std::to_string(replica));
  data_->set_watchdog(watchdog, "data group of stage " + std::to_string(stage));
  if (embedding_) embedding_->set_watchdog(watchdog, "embedding group");
  NUPIPE_CHECK(pipeline_->rank() == stage && pipeline_->size() == pipeline &&
                   data_->rank() == replica && data_->size() == data,
               "process groups do not match the " + std::to_string(pipeline) + " x " +
                   std::to_string(data) + " grid");
}

void ProcessGroups::set_device_plane(const PlaneFactory& make) {
  NUPIPE_CHECK(!pipeline_dev_ && !data_dev_ && !embedding_dev_, "device plane set twice");
  pipeline_dev_ = make(*pipeline_, true);
  data_dev_ = make(*data_, false);
  if (embedding_) embedding_dev_ = make(*embedding_, false);
}

void ProcessGroups::reset_device_plane() {
  embedding_dev_.reset();
  data_dev_.reset();
  pipeline_dev_.reset();
}

}  // namespace nupipe::parallel
