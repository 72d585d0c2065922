// An immutable, validated machine description parsed from configs/arch/*.yaml.
//
// Today: the `mesh2d` fabric (a Cerebras-like wafer: cores with private SRAM on a 2D mesh of
// links, entered from the host through channels on the east and west edges). All hardware facts
// come from the file, which cites a source next to each number; nothing here hard-codes one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace tessera::arch {

enum class FabricKind { Mesh2D };

struct Region {
  int64_t x = 0, y = 0, width = 0, height = 0;
  int64_t cores() const { return width * height; }
};

struct CoreSpec {
  double sram_bytes = 0;                         // private SRAM per core
  double reserved_bytes = 0;                     // of which code, stack and runtime support use this much
  std::map<std::string, double> macs_per_cycle;  // by dtype name ("fp16", "fp32", "bf16")
  int64_t routes = 0;                            // routable colours (static routes) per core
};

struct LinkSpec {
  double bytes_per_cycle = 0;      // per link, per direction
  double hop_latency_cycles = 0;   // router to router
  double ramp_latency_cycles = 0;  // between a core and its router, each way
};

struct IoSpec {
  int64_t edge_channels_per_side = 0;  // host I/O channels on each of the east and west edges
  int64_t max_channels_used = 0;
  double host_bytes_per_second = 0;
  double external_memory_bytes = 0;
  double external_bytes_per_second = 0;
};

struct EnergyTable {
  std::map<std::string, double> mac_pj;  // by dtype name
  double sram_read_pj_per_byte = 0;
  double sram_write_pj_per_byte = 0;
  double fabric_pj_per_byte_hop = 0;
  double offchip_pj_per_byte = 0;
};

struct ArchSpec {
  std::string name;
  std::string description;
  FabricKind fabric = FabricKind::Mesh2D;
  double clock_hz = 0;
  int64_t grid_width = 0, grid_height = 0;  // the whole fabric, in cores
  Region usable;                            // the rectangle programs may use
  CoreSpec core;
  LinkSpec link;
  IoSpec io;
  EnergyTable energy;

  double usable_sram_per_core() const { return core.sram_bytes - core.reserved_bytes; }
  double peak_macs_per_second(const std::string& dtype) const;
};

const std::vector<std::string>& known_dtypes();

ArchSpec load_arch(const std::filesystem::path& path);
ArchSpec parse_arch(const std::string& yaml_text, const std::string& origin);

}  // namespace tessera::arch
