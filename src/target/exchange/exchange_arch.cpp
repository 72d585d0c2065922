// The exchange part of an arch description: the tile count (the grid is tiles x 1), the
// all-to-all exchange and its sync, each tile's SRAM rate, links to other chips, energy per byte
// exchanged and per byte over a link.
#include <cmath>

#include "../arch_sections.hpp"
#include "tessera/arch/fields.hpp"
#include "tessera/arch/units.hpp"

namespace tessera::target {

namespace {

using config::YamlMap;

class ExchangeSection : public arch::FabricSection {
 public:
  const char* name() const override { return "exchange"; }

  std::map<std::string, std::string> resized(const arch::ArchSpec& a, double scale) const override {
    const auto units = std::llround(static_cast<double>(a.grid_width) * scale);
    if (units < 1) fail("{} scaled by {} has no tiles left", a.name, scale);
    return {{"tiles", std::to_string(units)}};
  }

  void parse_sections(const YamlMap& root, arch::ArchSpec& a) const override {
    a.grid_width = arch::positive_at_most(root, "tiles", int64_t{1} << 20, "a GC200 IPU has 1,472 tiles");
    a.grid_height = 1;
    a.usable = {0, 0, a.grid_width, 1};
    const YamlMap ex = root.map("exchange");
    a.exchange.bytes_per_cycle = arch::positive_unit(ex, "bandwidth", arch::parse_bytes_per_cycle);
    a.exchange.sync_cycles = arch::parse_cycles(ex.string("sync"), ex.where("sync"));
    ex.finish();
    arch::parse_chip_link(root, a.chip_link);
  }

  void parse_core(const YamlMap& core, arch::ArchSpec& a) const override {
    a.core.sram_bytes_per_cycle = arch::positive_unit(core, "sram_bandwidth", arch::parse_bytes_per_cycle);
  }

  void parse_energy(const YamlMap& energy, arch::ArchSpec& a) const override {
    a.energy.exchange_pj_per_byte = arch::parse_energy_pj_per_byte(energy.string("exchange"), energy.where("exchange"));
    a.energy.offchip_pj_per_byte = arch::parse_energy_pj_per_byte(energy.string("link"), energy.where("link"));
  }
};

}  // namespace

const arch::FabricSection& exchange_section() {
  static const ExchangeSection section;
  return section;
}

}  // namespace tessera::target
