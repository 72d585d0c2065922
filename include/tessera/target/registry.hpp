// The targets by name (as Ramulator 2 picks an implementation by name): the arch YAML's `fabric:`
// string chooses the Target, a plan file's `format` field chooses the target that reads it.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tessera/target/target.hpp"

namespace tessera::target {

struct TargetInfo {
  const char* fabric;       // the arch YAML's `fabric:` value
  const char* plan_format;  // the `format` field of the plan files it writes
  std::unique_ptr<Target> (*make)(ArchSource arch);
};

// Every target tessera has, in a fixed order.
const std::vector<TargetInfo>& targets();

// The target for `arch`, chosen by its fabric.
std::unique_ptr<Target> make_target(ArchSource arch);
// Reads an arch file (YAML, strict) into the target it describes.
std::unique_ptr<Target> load_target(const std::filesystem::path& arch_file);

// A plan file of any target: its `format` field chooses the target, whose arch the plan embeds.
// Throws Error naming `origin` for text that is not a plan tessera wrote.
struct LoadedPlan {
  std::unique_ptr<Target> target;
  std::shared_ptr<const Plan> plan;
};
LoadedPlan load_plan(const std::string& text, const std::string& origin);

}  // namespace tessera::target
