// plan_tool.h: `nupipe plan CONFIG.toml`: the planner's split next to the uniform one, the
// config's own and any --compare split, per stage the layers, recompute, parameters, bytes by
// kind and time, and per plan the simulated step time, bubble, peak and whether it fits. It
// claims only what its inputs support: "no budget given" without a memory budget, times
// relative to the slowest stage (no tokens/s, no MFU) without a device throughput. No MPI.
#pragma once

#include <string>
#include <vector>

namespace nupipe::launcher {

struct PlanCommand {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string memory_gib;   // "80" or "80,80,40,40"; empty: the config's (0: none)
  std::string tflops;       // per-stage throughput, "400" or a list; empty: the config's (none
                            // there: relative times only)
  int world_size = 0;       // 0: parallel.pipeline x parallel.data of the config
  std::string compare;      // "2,2,3,3"; empty: none
  std::string recompute;    // "auto", "none", "full"; empty: the config's train.recompute
  double p2p_gbps = 0.0;       // between stages, GB/s (0: free)
  double net_gbps = 0.0;       // data-parallel reduction, GB/s per rank (0: free)
  double peak_tflops = 0.0;    // the device's dense peak for MFU (0: --tflops)
  double gpu_hour_usd = 0.0;   // price of one device-hour (0: no cost line)
  bool calibrate = false;      // time the real layers here (cpu backend) for --tflops
  std::string save_calibration;  // with calibrate: write the times here (empty: nowhere)
  std::string calibration;       // read the times from here instead of timing (empty: none)
  bool json = false;
};

// Prints the plans; returns the exit code (0; 2 for bad arguments, also when nothing fits the
// budget: the table says by how much, and what would fit).
int run_plan(const PlanCommand& command);

}  // namespace nupipe::launcher
