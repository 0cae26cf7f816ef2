// memory_report.cpp: per-rank predicted and measured peaks, gathered as JSON.
#include "launcher/memory_report.h"

#include <nlohmann/json.hpp>

#include "launcher/checkpointing.h"
#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::launcher {

using runtime::MemTag;

void write_memory_json(const Stage& s, parallel::ProcessGroups& groups, const std::string& path,
                       const Checkpointer* checkpointer) {
  const parallel::Topology& topo = groups.topology();
  const parallel::StageMemory& plan = s.plan.at(topo.stage());
  const auto& mem = s.backend->memory();
  nlohmann::json tags = nlohmann::json::object();
  auto tag = [&](MemTag t, const nlohmann::json& predicted) {
    tags[runtime::tag_name(t)] = {{"predicted", predicted}, {"measured_peak", mem.peak(t)}};
  };
  tag(MemTag::params, plan.params);
  tag(MemTag::grads, plan.grads);
  tag(MemTag::optimizer, plan.optimizer);
  tag(MemTag::activations, plan.activations);
  tag(MemTag::workspace, plan.workspace);
  tag(MemTag::loss_workspace, plan.loss_workspace);
  tag(MemTag::weight_inputs, plan.weight_inputs);
  tag(MemTag::comm, 0);  // collectives run in place: nothing is allocated under it
  nlohmann::json mine = {{"rank", topo.rank},
                               {"stage", topo.stage()},
                               {"replica", topo.replica()},
                               {"recompute_blocks", plan.recompute_blocks},
                               {"in_flight", plan.in_flight},
                               {"predicted_total", plan.total()},
                               {"measured_peak_total", mem.peak_total()},
                               {"tags", tags}};
  if (checkpointer && checkpointer->async()) {
    mine["host_tags"] = {
        {runtime::tag_name(MemTag::checkpoint_snapshot),
         {{"predicted", checkpointer->snapshot_bytes_predicted()},
          {"measured_peak", checkpointer->host_memory().peak(MemTag::checkpoint_snapshot)}}}};
  }
  const std::vector<std::string> all = groups.world_mpi().gather_text(mine.dump());
  if (topo.rank != 0) return;
  nlohmann::json out = {{"ranks", nlohmann::json::array()}};
  for (const std::string& r : all) out["ranks"].push_back(nlohmann::json::parse(r));
  std::string step;
  if (int err = runtime::write_file_atomic(path, out.dump(1) + "\n", &step)) {
    throw usage_error("cannot write " + path + ": " + step + ": " + runtime::errno_text(err),
                      "check that run.dir is writable and has free space");
  }
}

}  // namespace nupipe::launcher
