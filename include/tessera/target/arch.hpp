// Reading an arch description: the common keys (arch/arch_spec.hpp) and the section of the target
// its `fabric:` names. Every arch file is read through here.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tessera/arch/arch_spec.hpp"

namespace tessera::target {

// Throws Error naming the file, line and key; an unknown fabric lists the known ones.
arch::ArchSpec parse_arch(const std::string& yaml_text, const std::string& origin);
arch::ArchSpec load_arch(const std::filesystem::path& path);
// The arch keys to edit so that `a` has `scale` times as many cores (FabricSection::resized).
std::map<std::string, std::string> resized(const arch::ArchSpec& a, double scale);

}  // namespace tessera::target
