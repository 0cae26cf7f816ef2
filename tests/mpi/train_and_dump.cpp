// train_and_dump.cpp: trains a config on whatever layout mpirun gives it, then writes the
// per-step losses (rank 0) and every parameter of replica 0 of each stage to OUT_DIR, so
// compare_runs.py can check that layouts and schedules give the same numbers; every rank also
// writes stage.rankR.txt (flat buffer sizes, optimizer bytes, data-group bytes sent).
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>

#include "checkpoint/h5_tensors.h"
#include "launcher/checkpointing.h"
#include "launcher/config.h"
#include "launcher/trainer.h"
#include "runtime/backend.h"
#include "runtime/error.h"

using namespace nupipe;

int main(int argc, char** argv) {
  CLI::App app{"train, then dump losses and final weights (equivalence tests)"};
  std::string config_path, out_dir;
  std::vector<std::string> overrides;
  app.add_option("--config", config_path)->required();
  app.add_option("--out", out_dir)->required();
  app.add_option("--set", overrides);
  bool resave = false;
  app.add_flag("--resave-at-start", resave,
               "save a checkpoint of the loaded state (into checkpoint.dir) before training");
  CLI11_PARSE(app, argc, argv);
  parallel::World world(&argc, &argv);
  try {
    overrides.push_back("run.dir=" + out_dir + "/run");
    const launcher::Config cfg = launcher::load_config(config_path, overrides);
    auto log = std::make_shared<spdlog::logger>("quiet",
                                                std::make_shared<spdlog::sinks::null_sink_mt>());
    launcher::TrainHooks hooks;
    hooks.on_finish = [&](const runtime::StageModel& model, parallel::ProcessGroups& groups) {
      // Every rank: its stage's flat buffer sizes, optimizer bytes and data-group traffic
      // (zero_equivalence.sh checks them against ZeRO's arithmetic).
      {
        std::ofstream f(out_dir + "/stage.rank" + std::to_string(world.rank()) + ".txt");
        f << "stage " << groups.topology().stage() << "\nreplica "
          << groups.topology().replica() << "\ndata " << groups.topology().data << "\nnumel "
          << model.params().numel() << "\npadded_numel " << model.params().padded_numel()
          << "\noptimizer_bytes " << model.backend().memory().current(runtime::MemTag::optimizer)
          << "\ndata_bytes_sent " << groups.data().bytes_sent() << "\n";
      }
      if (groups.topology().replica() != 0) return;
      checkpoint::H5TensorWriter w(out_dir + "/weights.rank" + std::to_string(world.rank()) +
                                   ".h5");
      for (const runtime::TensorSpec& s : model.params().specs()) {
        w.write(s.name, runtime::to_host(model.params().param(s.name)).data(), s.shape);
      }
      w.close();
    };
    if (resave) {
      hooks.on_start = [](launcher::Checkpointer& ck, const checkpoint::TrainingState& state) {
        ck.save(state, "resave");
      };
    }
    const launcher::TrainResult r = launcher::train(cfg, world, log, hooks);
    if (world.is_root()) {
      std::ofstream f(out_dir + "/losses.txt");
      f.precision(17);
      for (double l : r.losses) f << l << "\n";
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", world.rank(), e.what());
    world.abort(static_cast<int>(e.code()));
  }
  return 0;
}
