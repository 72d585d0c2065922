// The shared_memory part of an arch description: the SM (or NeuronCore) count (the grid is
// sms x 1), the memory system (L2, HBM), the runtime (kernel launch, board power), links to other
// chips and, optionally, the scale-out network between nodes; energy per HBM byte and per link byte.
#include <cmath>

#include "../arch_sections.hpp"
#include "tessera/arch/fields.hpp"
#include "tessera/arch/units.hpp"

namespace tessera::target {

namespace {

using config::YamlMap;

class SharedMemorySection : public arch::FabricSection {
 public:
  const char* name() const override { return "shared_memory"; }

  std::map<std::string, std::string> resized(const arch::ArchSpec& a, double scale) const override {
    const auto units = std::llround(static_cast<double>(a.grid_width) * scale);
    if (units < 1) fail("{} scaled by {} has no SMs left", a.name, scale);
    return {{"sms", std::to_string(units)}};
  }

  void parse_sections(const YamlMap& root, arch::ArchSpec& a) const override {
    a.grid_width = arch::positive_at_most(root, "sms", int64_t{1} << 16, "an H100 has 132 SMs");
    a.grid_height = 1;
    a.usable = {0, 0, a.grid_width, 1};
    const YamlMap mem = root.map("memory");
    if (mem.has("l2")) a.gpu.l2_bytes = arch::positive_unit(mem, "l2", arch::parse_bytes);
    if (mem.has("l2_bandwidth"))
      a.gpu.l2_bytes_per_second = arch::positive_unit(mem, "l2_bandwidth", arch::parse_bytes_per_second);
    a.gpu.hbm_bytes = arch::positive_unit(mem, "hbm", arch::parse_bytes);
    a.gpu.hbm_bytes_per_second = arch::positive_unit(mem, "hbm_bandwidth", arch::parse_bytes_per_second);
    if (const auto e = mem.optional_number("hbm_efficiency")) {
      if (!(*e > 0 && *e <= 1))
        fail("{}: {} is not a share of the peak bandwidth in (0, 1] (an A100's read kernel sustains 0.88 of it)",
             mem.where("hbm_efficiency"), *e);
      a.gpu.hbm_efficiency = *e;
    }
    mem.finish();
    const YamlMap run = root.map("runtime");
    a.gpu.kernel_launch_s = arch::parse_seconds(run.string("kernel_launch"), run.where("kernel_launch"));
    if (run.has("tdp")) a.gpu.tdp_watts = arch::positive_unit(run, "tdp", arch::parse_watts);
    if (const auto e = run.optional_number("matmul_efficiency")) {
      if (!(*e > 0 && *e <= 1))
        fail("{}: {} is not a share of the peak in (0, 1] (an A100 sustains 0.869 of it)",
             run.where("matmul_efficiency"), *e);
      a.gpu.matmul_efficiency = *e;
    }
    a.gpu.attention_efficiency = a.gpu.matmul_efficiency;
    if (const auto e = run.optional_number("attention_efficiency")) {
      if (!(*e > 0 && *e <= 1))
        fail("{}: {} is not a share of the peak in (0, 1] (FlashAttention-2 reaches 0.73 of an A100's)",
             run.where("attention_efficiency"), *e);
      a.gpu.attention_efficiency = *e;
    }
    run.finish();
    arch::parse_chip_link(root, a.chip_link);
    if (root.has("network")) {
      const YamlMap net = root.map("network");
      a.network.chips_per_node = arch::positive_at_most(net, "chips_per_node", int64_t{1} << 16, "a DGX H100 has 8");
      a.network.bytes_per_second = arch::positive_unit(net, "bandwidth", arch::parse_bytes_per_second);
      a.network.latency_s = arch::parse_seconds(net.string("latency"), net.where("latency"));
      net.finish();
    }
  }

  void parse_core(const YamlMap&, arch::ArchSpec&) const override {}

  void parse_energy(const YamlMap& energy, arch::ArchSpec& a) const override {
    a.energy.hbm_pj_per_byte = arch::parse_energy_pj_per_byte(energy.string("hbm"), energy.where("hbm"));
    a.energy.offchip_pj_per_byte = arch::parse_energy_pj_per_byte(energy.string("link"), energy.where("link"));
  }
};

}  // namespace

const arch::FabricSection& shared_memory_section() {
  static const SharedMemorySection section;
  return section;
}

}  // namespace tessera::target
