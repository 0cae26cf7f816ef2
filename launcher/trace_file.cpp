// trace_file.cpp: Chrome trace JSON (complete "X" events plus process names) per rank,
// merged by rank 0.
#include "launcher/trace_file.h"

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace nupipe::launcher {

namespace {
std::string part_path(const std::string& path, int rank) {
  return path + ".rank" + std::to_string(rank);
}
}  // namespace

void align_trace_clocks(parallel::Trace& trace, parallel::MpiCommunicator& world,
                        const std::string& host) {
  using Clock = parallel::Trace::Clock;
  const Clock::time_point here = Clock::now();
  const std::string root = world.broadcast_text(
      host + "\n" + std::to_string(here.time_since_epoch().count()));
  const size_t cut = root.find('\n');
  if (root.substr(0, cut) != host) {
    trace.set_origin(here);
    return;
  }
  trace.set_origin(Clock::time_point(Clock::duration(std::stoll(root.substr(cut + 1)))));
}

void write_chrome_trace(const parallel::Trace& trace, const parallel::Topology& topo,
                        parallel::Communicator& world, const std::string& path) {
  nlohmann::json events = nlohmann::json::array();
  const int pid = topo.rank;
  events.push_back({{"name", "process_name"},
                    {"ph", "M"},
                    {"pid", pid},
                    {"args",
                     {{"name", "rank " + std::to_string(pid) + " (stage " +
                                   std::to_string(topo.stage()) + ", replica " +
                                   std::to_string(topo.replica()) + ")"}}}});
  events.push_back(
      {{"name", "process_sort_index"}, {"ph", "M"}, {"pid", pid}, {"args", {{"sort_index", pid}}}});
  for (const parallel::Trace::Span& s : trace.spans()) {
    nlohmann::json e = {{"name", s.name}, {"cat", s.category}, {"ph", "X"},
                        {"ts", s.start_us}, {"dur", s.duration_us}, {"pid", pid},
                        {"tid", 0},        {"args", {{"step", s.step + 1}}}};  // from 1, as the log
    if (s.microbatch >= 0) e["args"]["microbatch"] = s.microbatch;
    events.push_back(std::move(e));
  }
  std::ofstream(part_path(path, pid)) << events.dump();
  world.barrier();
  if (world.rank() != 0) return;
  nlohmann::json all = nlohmann::json::array();
  for (int r = 0; r < world.size(); ++r) {
    std::ifstream in(part_path(path, r));
    if (!in) throw usage_error("trace part " + part_path(path, r) + " is missing",
                               "run.dir must be on a file system every rank can write");
    for (auto& e : nlohmann::json::parse(in)) all.push_back(std::move(e));
    std::filesystem::remove(part_path(path, r));
  }
  std::ofstream(path) << nlohmann::json{{"traceEvents", all}, {"displayTimeUnit", "ms"}}.dump();
}

}  // namespace nupipe::launcher
