#include "tessera/arch/arch_spec.hpp"

#include <algorithm>

#include "tessera/arch/fields.hpp"
#include "tessera/arch/units.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/config/yaml_reader.hpp"

namespace tessera::arch {

double ArchSpec::peak_macs_per_second(const std::string& dtype) const {
  const auto it = core.macs_per_cycle.find(dtype);
  return it == core.macs_per_cycle.end() ? 0.0 : it->second * clock_hz * static_cast<double>(usable.cores());
}

namespace {

using config::YamlMap;

std::map<std::string, double> per_dtype(const YamlMap& parent, const std::string& key,
                                        double (*parse)(const YamlMap&, const std::string&)) {
  const YamlMap map = parent.map(key);
  std::map<std::string, double> out;
  for (const auto& dtype : activation_formats())
    if (map.has(dtype)) out[dtype] = parse(map, dtype);
  map.finish();
  if (out.empty()) fail("{}: give at least one of fp32, bf16, fp16, fp8_e4m3, fp8_e5m2", parent.where(key));
  return out;
}

std::vector<std::string> formats_from(const YamlMap& map, const std::string& key,
                                      const std::vector<std::string>& allowed, const std::vector<std::string>& dflt) {
  if (!map.has(key)) return dflt;
  std::vector<std::string> out = map.strings(key);
  for (const auto& f : out)
    if (std::find(allowed.begin(), allowed.end(), f) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail("{}: unknown format '{}'; known: {}", map.where(key), f, list);
    }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out.empty() ? "none" : out;
}

bool contains(const std::vector<std::string>& items, const std::string& x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

}  // namespace

void parse_chip_link(const YamlMap& root, ChipLinkSpec& out) {
  const YamlMap link = root.map("link");
  out.bytes_per_second = positive_unit(link, "bandwidth", parse_bytes_per_second);
  out.latency_s = parse_seconds(link.string("latency"), link.where("latency"));
  if (const auto e = link.optional_number("efficiency")) {
    if (!(*e > 0 && *e <= 1))
      fail("{}: {} is not a share of the line rate: give a number in (0, 1], e.g. 0.77", link.where("efficiency"), *e);
    out.efficiency = *e;
  }
  link.finish();
}

ArchSpec parse_arch(const YamlMap& root, const FabricSection& fabric) {
  ArchSpec a;
  a.name = root.string("name");
  a.description = root.optional_string("description").value_or("");
  a.fabric = root.string("fabric");
  if (a.fabric != fabric.name()) fail("{}: a {} description read as {}", root.where("fabric"), a.fabric, fabric.name());
  a.clock_hz = positive_unit(root, "clock", parse_frequency_hz);
  fabric.parse_sections(root, a);

  const YamlMap core = root.map("core");
  a.core.sram_bytes = positive_unit(core, "sram", parse_bytes);
  a.core.reserved_bytes = core.has("reserved") ? parse_bytes(core.string("reserved"), core.where("reserved")) : 0;
  if (a.core.reserved_bytes >= a.core.sram_bytes)
    fail("{}: reserves all of the core's {} bytes of SRAM", core.where("reserved"), a.core.sram_bytes);
  a.core.macs_per_cycle = per_dtype(core, "macs_per_cycle", [](const YamlMap& m, const std::string& k) {
    const double v = m.number(k);
    if (v <= 0) fail("{}: must be > 0", m.where(k));
    return v;
  });
  fabric.parse_core(core, a);
  if (core.has("matrix_rows"))
    a.core.matrix_rows = per_dtype(core, "matrix_rows", [](const YamlMap& m, const std::string& k) {
      const int64_t v = m.integer(k);
      if (v <= 0) fail("{}: must be a positive integer, got {}", m.where(k), v);
      return static_cast<double>(v);
    });
  std::vector<std::string> mac_dtypes;
  for (const auto& [dtype, _] : a.core.macs_per_cycle) mac_dtypes.push_back(dtype);
  if (core.has("accumulate")) {
    a.core.accumulate = core.string("accumulate");
    if (a.core.accumulate != "fp32")
      fail("{}: tessera emulates fp32 accumulation only, got '{}'", core.where("accumulate"), a.core.accumulate);
  }
  a.core.weight_formats = formats_from(core, "weight_formats", weight_formats(), mac_dtypes);
  a.core.kv_formats = formats_from(core, "kv_formats", activation_formats(), mac_dtypes);
  a.core.unpack_ops_per_weight = core.optional_number("unpack_ops_per_weight").value_or(0.0);
  if (a.core.unpack_ops_per_weight < 0) fail("{}: must be >= 0", core.where("unpack_ops_per_weight"));
  core.finish();

  const YamlMap energy = root.map("energy");
  a.energy.mac_pj = per_dtype(
      energy, "mac", [](const YamlMap& m, const std::string& k) { return parse_energy_pj(m.string(k), m.where(k)); });
  auto per_byte = [&](const std::string& key) {
    return parse_energy_pj_per_byte(energy.string(key), energy.where(key));
  };
  a.energy.sram_read_pj_per_byte = per_byte("sram_read");
  a.energy.sram_write_pj_per_byte = per_byte("sram_write");
  fabric.parse_energy(energy, a);
  energy.finish();

  if (root.has("sparsity")) {
    const YamlMap sp = root.map("sparsity");
    if (sp.has("weights")) {
      for (const auto& pattern : sp.strings("weights")) {
        bool known = pattern == "unstructured";
        try {
          if (!known)
            known = parse_sparsity(pattern.starts_with("block") ? pattern + ":0.5" : pattern).capability() == pattern;
        } catch (const Error&) {
          known = false;
        }
        if (!known)
          fail("{}: unknown pattern '{}'; write unstructured, N:M (e.g. 2:4) or blockK (e.g. block16)",
               sp.where("weights"), pattern);
        a.sparsity.weights.push_back(pattern);
      }
    }
    a.sparsity.activations = sp.optional_boolean("activations").value_or(false);
    sp.finish();
  }

  if (root.has("area")) {
    const YamlMap area = root.map("area");
    AreaSpec& s = a.area;
    s.described = true;
    s.process = area.optional_string("process").value_or("");
    s.units = area.integer("units");
    if (s.units < 1) fail("{}: must be >= 1 (the cores, tiles or SMs on the die)", area.where("units"));
    s.unit_logic_mm2 = parse_area_mm2(area.string("unit_logic"), area.where("unit_logic"));
    if (area.has("mac_area"))
      s.mac_mm2 = per_dtype(area, "mac_area", [](const YamlMap& m, const std::string& k) {
        return parse_area_mm2(m.string(k), m.where(k));
      });
    for (const auto& [dtype, _] : s.mac_mm2)
      if (!a.core.macs_per_cycle.contains(dtype))
        fail("{}: the core has no {} MACs (core.macs_per_cycle)", area.where("mac_area"), dtype);
    s.sram_mm2_per_byte = parse_area_mm2_per_byte(area.string("sram_density"), area.where("sram_density"));
    if (area.has("shared_sram"))
      s.shared_sram_bytes = parse_bytes(area.string("shared_sram"), area.where("shared_sram"));
    if (area.has("fixed")) s.fixed_mm2 = parse_area_mm2(area.string("fixed"), area.where("fixed"));
    if (area.has("published")) s.published_mm2 = parse_area_mm2(area.string("published"), area.where("published"));
    if (area.has("leakage")) s.leakage_w_per_mm2 = parse_watts_per_mm2(area.string("leakage"), area.where("leakage"));
    if (s.unit_logic_mm2 <= 0 && s.sram_mm2_per_byte <= 0)
      fail("{}: a core of no area; give unit_logic or sram_density", root.where("area"));
    area.finish();
  }

  for (const auto& [dtype, _] : a.core.macs_per_cycle)
    if (!a.energy.mac_pj.contains(dtype))
      fail("{}: the core computes in {} but energy.mac has no {} entry", root.where("energy"), dtype, dtype);
  root.finish();
  return a;
}

namespace {

double mac_area_mm2(const ArchSpec& arch) {
  double sum = 0;
  for (const auto& [dtype, area] : arch.area.mac_mm2) sum += area * arch.core.macs_per_cycle.at(dtype);
  return sum;
}

}  // namespace

double unit_area_mm2(const ArchSpec& arch) {
  return arch.area.unit_logic_mm2 + mac_area_mm2(arch) + arch.core.sram_bytes * arch.area.sram_mm2_per_byte;
}

AreaBreakdown area_of(const ArchSpec& arch) {
  const AreaSpec& s = arch.area;
  const auto units = static_cast<double>(s.units);
  return {units * (s.unit_logic_mm2 + mac_area_mm2(arch)), units * arch.core.sram_bytes * s.sram_mm2_per_byte,
          s.shared_sram_bytes * s.sram_mm2_per_byte, s.fixed_mm2};
}

Status check_precision(const ArchSpec& arch, const PrecisionPolicy& policy) {
  std::vector<std::string> lacks;
  std::vector<std::string> mac_dtypes;
  for (const auto& [dtype, _] : arch.core.macs_per_cycle) mac_dtypes.push_back(dtype);
  if (!arch.core.macs_per_cycle.contains(policy.activations))
    lacks.push_back(fmt::format("{} activations (its MACs take {})", policy.activations, join(mac_dtypes)));
  if (!contains(arch.core.weight_formats, policy.weights))
    lacks.push_back(fmt::format("{} weights (it stores {})", policy.weights, join(arch.core.weight_formats)));
  if (!contains(arch.core.kv_formats, policy.kv))
    lacks.push_back(fmt::format("a {} KV cache (it stores {})", policy.kv, join(arch.core.kv_formats)));
  if (lacks.empty()) return Status::ok();
  std::string list;
  for (size_t i = 0; i < lacks.size(); ++i) list += (i == 0 ? "" : "; ") + lacks[i];
  return Status::failure("{} does not support {}", arch.name, list);
}

bool skips_weight_zeros(const ArchSpec& arch, const SparsityPattern& pattern) {
  return !pattern.dense() && contains(arch.sparsity.weights, pattern.capability());
}

PrecisionPolicy load_precision_policy(const std::filesystem::path& path) {
  const YamlMap root = YamlMap::parse_file(path);
  PrecisionPolicy p;
  p.weights = root.optional_string("weights").value_or(p.weights);
  p.group = root.optional_integer("group").value_or(p.group);
  p.activations = root.optional_string("activations").value_or(p.activations);
  p.kv = root.optional_string("kv").value_or(p.kv);
  p.prune = root.optional_string("prune").value_or("");
  p.scales = root.optional_string("scales").value_or(p.scales);
  root.finish();
  try {
    p.validate();
  } catch (const Error& e) {
    fail("{}: {}", path.string(), e.what());
  }
  return p;
}

}  // namespace tessera::arch
