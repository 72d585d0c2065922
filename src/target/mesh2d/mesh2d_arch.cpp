// The mesh2d part of an arch description: the grid and the rectangle programs may use, each
// core's routes, the links between routers, the host I/O on the east and west edges, and the
// fabric's energy per hop.
#include <cmath>

#include "../arch_sections.hpp"
#include "tessera/arch/fields.hpp"
#include "tessera/arch/units.hpp"

namespace tessera::target {

namespace {

using config::YamlMap;

class Mesh2dSection : public arch::FabricSection {
 public:
  const char* name() const override { return "mesh2d"; }

  // The grid scaled by sqrt(scale) on each side (its aspect ratio kept), the usable rectangle
  // keeping its margins (the host-support columns and rows).
  std::map<std::string, std::string> resized(const arch::ArchSpec& a, double scale) const override {
    const double side = std::sqrt(scale);
    const auto width = std::max<int64_t>(1, std::llround(static_cast<double>(a.grid_width) * side));
    const auto height = std::max<int64_t>(1, std::llround(static_cast<double>(a.grid_height) * side));
    const int64_t usable_width = width - (a.grid_width - a.usable.width);
    const int64_t usable_height = height - (a.grid_height - a.usable.height);
    if (usable_width < 1 || usable_height < 1)
      fail("{} scaled to {}x{} cores leaves no usable core beside its {}x{} cores of host support", a.name, width,
           height, a.grid_width - a.usable.width, a.grid_height - a.usable.height);
    std::map<std::string, std::string> keys = {{"grid.width", std::to_string(width)},
                                               {"grid.height", std::to_string(height)}};
    // Without margins the usable rectangle is the grid (and the file may not have the key).
    if (a.usable.width != a.grid_width || a.usable.height != a.grid_height) {
      keys["usable.width"] = std::to_string(usable_width);
      keys["usable.height"] = std::to_string(usable_height);
    }
    return keys;
  }

  void parse_sections(const YamlMap& root, arch::ArchSpec& a) const override {
    const YamlMap grid = root.map("grid");
    constexpr const char* kWafer = "a WSE-3 is about 1,000 cores on a side";
    a.grid_width = arch::positive_at_most(grid, "width", int64_t{1} << 14, kWafer);
    a.grid_height = arch::positive_at_most(grid, "height", int64_t{1} << 14, kWafer);
    if (a.grid_width * a.grid_height > (int64_t{1} << 26))
      fail("{}: a {}x{} grid has more cores than tessera simulates ({} at most; {})", root.where("grid"), a.grid_width,
           a.grid_height, int64_t{1} << 26, kWafer);
    grid.finish();
    a.usable = {0, 0, a.grid_width, a.grid_height};
    if (root.has("usable")) {
      const YamlMap u = root.map("usable");
      a.usable = {arch::non_negative(u, "x"), arch::non_negative(u, "y"), arch::positive(u, "width"),
                  arch::positive(u, "height")};
      u.finish();
      if (a.usable.x + a.usable.width > a.grid_width || a.usable.y + a.usable.height > a.grid_height)
        fail("{}: region {}x{} at ({}, {}) does not fit in the {}x{} grid", root.where("usable"), a.usable.width,
             a.usable.height, a.usable.x, a.usable.y, a.grid_width, a.grid_height);
    }

    const YamlMap link = root.map("link");
    a.link.bytes_per_cycle = arch::positive_unit(link, "bandwidth", arch::parse_bytes_per_cycle);
    a.link.hop_latency_cycles = arch::parse_cycles(link.string("hop_latency"), link.where("hop_latency"));
    a.link.ramp_latency_cycles = arch::parse_cycles(link.string("ramp_latency"), link.where("ramp_latency"));
    link.finish();

    const YamlMap io = root.map("io");
    a.io.edge_channels_per_side = arch::positive(io, "edge_channels_per_side");
    a.io.max_channels_used = arch::positive(io, "max_channels_used");
    if (a.io.max_channels_used > 2 * a.io.edge_channels_per_side)
      fail("{}: more than the {} channels on the two edges", io.where("max_channels_used"),
           2 * a.io.edge_channels_per_side);
    a.io.host_bytes_per_second = arch::positive_unit(io, "host_bandwidth", arch::parse_bytes_per_second);
    a.io.external_memory_bytes = arch::positive_unit(io, "external_memory", arch::parse_bytes);
    a.io.external_bytes_per_second = arch::positive_unit(io, "external_bandwidth", arch::parse_bytes_per_second);
    // Chips of a system reach each other through the host I/O.
    a.chip_link.bytes_per_second = a.io.host_bytes_per_second;
    a.chip_link.latency_s = arch::parse_seconds(io.string("chip_latency"), io.where("chip_latency"));
    io.finish();
  }

  void parse_core(const YamlMap& core, arch::ArchSpec& a) const override {
    a.core.routes = arch::positive(core, "routes");
    if (core.has("vector_op_overhead"))
      a.core.vector_op_cycles = arch::parse_cycles(core.string("vector_op_overhead"), core.where("vector_op_overhead"));
  }

  void parse_energy(const YamlMap& energy, arch::ArchSpec& a) const override {
    a.energy.fabric_pj_per_byte_hop =
        arch::parse_energy_pj_per_byte(energy.string("fabric_hop"), energy.where("fabric_hop"));
    a.energy.offchip_pj_per_byte = arch::parse_energy_pj_per_byte(energy.string("offchip"), energy.where("offchip"));
  }
};

}  // namespace

const arch::FabricSection& mesh2d_section() {
  static const Mesh2dSection section;
  return section;
}

}  // namespace tessera::target
