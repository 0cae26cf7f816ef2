// config_devices.cpp: [[runtime.devices]] resolved into per-stage memory_gib and tflops lists.
#include "launcher/config_devices.h"

#include <cmath>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace nupipe::launcher {

namespace {

constexpr const char* kExample =
    "[[runtime.devices]]\nstages = 2\nmemory_gib = 80\ntflops = 400\n\n[[runtime.devices]]\n"
    "stages = 2\nmemory_gib = 40\ntflops = 200";

std::string at(std::string_view source, const toml::node& n) {
  const auto& b = n.source().begin;
  if (b.line == 0) return std::string(source);
  return std::string(source) + ":" + std::to_string(b.line) + ":" + std::to_string(b.column);
}

[[noreturn]] void refuse(std::string_view source, const toml::node& n, const std::string& what) {
  throw usage_error(at(source, n) + ": " + what,
                    std::string("write one table per kind of device, in stage order, e.g.\n") +
                        kExample);
}

double number(std::string_view source, const toml::node& n, const std::string& name) {
  if (!n.is_number()) refuse(source, n, name + " must be a number");
  const double v = n.is_integer() ? static_cast<double>(n.as_integer()->get())
                                  : n.as_floating_point()->get();
  if (!std::isfinite(v)) refuse(source, n, name + " must be a finite number");
  return v;
}

}  // namespace

void expand_devices(toml::table& root, std::string_view source, Origins& origins) {
  toml::table* runtime = root["runtime"].as_table();
  if (!runtime || !runtime->contains("devices")) return;
  const toml::node& list = *runtime->get("devices");
  const toml::array* arr = list.as_array();
  if (!arr || arr->empty() || !arr->is_array_of_tables())
    refuse(source, list, "runtime.devices must be a non-empty list of tables ([[runtime.devices]])");
  for (const char* key : {"memory_gib", "tflops"}) {
    if (runtime->contains(key)) {
      refuse(source, *runtime->get(key),
             std::string("runtime.") + key + " and runtime.devices both give the stages' " +
                 "devices: keep one (runtime.devices, or the per-stage lists)");
    }
  }
  toml::array memory, tflops;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::table& d = *arr->get(i)->as_table();
    const std::string name = "runtime.devices[" + std::to_string(i) + "]";
    int64_t stages = 1;
    double gib = 0.0, tf = 1.0;
    for (const auto& [k, v] : d) {
      const std::string key(k.str());
      if (key == "stages") {
        if (!v.is_integer() || v.as_integer()->get() < 1 || v.as_integer()->get() > 1 << 20)
          refuse(source, v, name + ".stages must be an integer >= 1 (consecutive stages)");
        stages = v.as_integer()->get();
      } else if (key == "memory_gib") {
        gib = number(source, v, name + ".memory_gib");
        if (gib < 0) refuse(source, v, name + ".memory_gib must be >= 0 (0: the host's share)");
      } else if (key == "tflops") {
        tf = number(source, v, name + ".tflops");
        if (tf <= 0) refuse(source, v, name + ".tflops must be > 0");
      } else if (key == "name") {
        if (!v.is_string()) refuse(source, v, name + ".name must be a string");
      } else {
        refuse(source, v, "unknown key '" + name + "." + key +
                              "': a device has stages, memory_gib, tflops and name");
      }
    }
    for (int64_t s = 0; s < stages; ++s) {
      memory.push_back(gib);
      tflops.push_back(tf);
    }
  }
  const toml::node* pipeline = root.at_path("parallel.pipeline").node();
  const int64_t p = pipeline && pipeline->is_integer() ? pipeline->as_integer()->get()
                                                       : Config{}.parallel.pipeline;
  if (static_cast<int64_t>(memory.size()) != p) {
    refuse(source, list, "runtime.devices covers " + std::to_string(memory.size()) +
                             " stages (the sum of their `stages`), parallel.pipeline is " +
                             std::to_string(p));
  }
  const std::string where = "runtime.devices (" + at(source, list) + ")";
  runtime->erase("devices");
  runtime->insert("memory_gib", std::move(memory));
  runtime->insert("tflops", std::move(tflops));
  origins["runtime.memory_gib"] = where;
  origins["runtime.tflops"] = where;
}

}  // namespace nupipe::launcher
