#include "tessera/arch/arch_spec.hpp"

#include <algorithm>

#include "tessera/arch/units.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/config/yaml_reader.hpp"

namespace tessera::arch {

const char* fabric_name(FabricKind kind) {
  switch (kind) {
    case FabricKind::Mesh2D:
      return "mesh2d";
    case FabricKind::Exchange:
      return "exchange";
    case FabricKind::SharedMemory:
      return "shared_memory";
  }
  return "?";
}

double ArchSpec::peak_macs_per_second(const std::string& dtype) const {
  const auto it = core.macs_per_cycle.find(dtype);
  return it == core.macs_per_cycle.end() ? 0.0 : it->second * clock_hz * static_cast<double>(usable.cores());
}

namespace {

using config::YamlMap;

int64_t positive(const YamlMap& map, const std::string& key) {
  const int64_t v = map.integer(key);
  if (v <= 0) fail("{}: must be a positive integer, got {}", map.where(key), v);
  return v;
}

// A positive integer no larger than `limit`, which leaves headroom over every machine that exists
// (`what` says which); a description beyond it is a typo, and would cost minutes to simulate.
int64_t positive_at_most(const YamlMap& map, const std::string& key, int64_t limit, const char* what) {
  const int64_t v = positive(map, key);
  if (v > limit) fail("{}: {} is more than tessera simulates ({} at most; {})", map.where(key), v, limit, what);
  return v;
}

int64_t non_negative(const YamlMap& map, const std::string& key) {
  const int64_t v = map.integer(key);
  if (v < 0) fail("{}: must be >= 0, got {}", map.where(key), v);
  return v;
}

double positive_unit(const YamlMap& map, const std::string& key,
                     double (*parse)(std::string_view, const std::string&)) {
  const double v = parse(map.string(key), map.where(key));
  if (v <= 0) fail("{}: must be > 0", map.where(key));
  return v;
}

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

// The wafer's links and host I/O (mesh2d).
void parse_mesh_links(const YamlMap& root, ArchSpec& a) {
  const YamlMap link = root.map("link");
  a.link.bytes_per_cycle = positive_unit(link, "bandwidth", parse_bytes_per_cycle);
  a.link.hop_latency_cycles = parse_cycles(link.string("hop_latency"), link.where("hop_latency"));
  a.link.ramp_latency_cycles = parse_cycles(link.string("ramp_latency"), link.where("ramp_latency"));
  link.finish();

  const YamlMap io = root.map("io");
  a.io.edge_channels_per_side = positive(io, "edge_channels_per_side");
  a.io.max_channels_used = positive(io, "max_channels_used");
  if (a.io.max_channels_used > 2 * a.io.edge_channels_per_side)
    fail("{}: more than the {} channels on the two edges", io.where("max_channels_used"),
         2 * a.io.edge_channels_per_side);
  a.io.host_bytes_per_second = positive_unit(io, "host_bandwidth", parse_bytes_per_second);
  a.io.external_memory_bytes = positive_unit(io, "external_memory", parse_bytes);
  a.io.external_bytes_per_second = positive_unit(io, "external_bandwidth", parse_bytes_per_second);
  a.chip_link.bytes_per_second = a.io.host_bytes_per_second;
  a.chip_link.latency_s = parse_seconds(io.string("chip_latency"), io.where("chip_latency"));
  io.finish();
}

// Links to the other chips of a system (exchange, shared_memory).
void parse_chip_link(const YamlMap& root, ArchSpec& a) {
  const YamlMap link = root.map("link");
  a.chip_link.bytes_per_second = positive_unit(link, "bandwidth", parse_bytes_per_second);
  a.chip_link.latency_s = parse_seconds(link.string("latency"), link.where("latency"));
  link.finish();
}

// An IPU's tile count and exchange (exchange).
void parse_exchange(const YamlMap& root, ArchSpec& a) {
  a.grid_width = positive_at_most(root, "tiles", int64_t{1} << 20, "a GC200 IPU has 1,472 tiles");
  a.grid_height = 1;
  a.usable = {0, 0, a.grid_width, 1};
  const YamlMap ex = root.map("exchange");
  a.exchange.bytes_per_cycle = positive_unit(ex, "bandwidth", parse_bytes_per_cycle);
  a.exchange.sync_cycles = parse_cycles(ex.string("sync"), ex.where("sync"));
  ex.finish();
}

// A GPU's SM count, memory system and runtime (shared_memory).
void parse_gpu_memory(const YamlMap& root, ArchSpec& a) {
  a.grid_width = positive_at_most(root, "sms", int64_t{1} << 16, "an H100 has 132 SMs");
  a.grid_height = 1;
  a.usable = {0, 0, a.grid_width, 1};
  const YamlMap mem = root.map("memory");
  if (mem.has("l2")) a.gpu.l2_bytes = positive_unit(mem, "l2", parse_bytes);
  a.gpu.hbm_bytes = positive_unit(mem, "hbm", parse_bytes);
  a.gpu.hbm_bytes_per_second = positive_unit(mem, "hbm_bandwidth", parse_bytes_per_second);
  mem.finish();
  const YamlMap run = root.map("runtime");
  a.gpu.kernel_launch_s = parse_seconds(run.string("kernel_launch"), run.where("kernel_launch"));
  if (run.has("tdp")) a.gpu.tdp_watts = positive_unit(run, "tdp", parse_watts);
  run.finish();
}

}  // namespace

ArchSpec parse_arch(const std::string& yaml_text, const std::string& origin) {
  const YamlMap root = YamlMap::parse_string(yaml_text, origin);
  ArchSpec a;
  a.name = root.string("name");
  a.description = root.optional_string("description").value_or("");
  const std::string fabric = root.string("fabric");
  if (fabric != "mesh2d" && fabric != "exchange" && fabric != "shared_memory")
    fail("{}: unknown fabric '{}'; supported: mesh2d, exchange, shared_memory", root.where("fabric"), fabric);
  a.fabric = fabric == "mesh2d"     ? FabricKind::Mesh2D
             : fabric == "exchange" ? FabricKind::Exchange
                                    : FabricKind::SharedMemory;
  const bool mesh = a.fabric == FabricKind::Mesh2D, gpu = a.fabric == FabricKind::SharedMemory,
             ipu = a.fabric == FabricKind::Exchange;
  a.clock_hz = positive_unit(root, "clock", parse_frequency_hz);

  if (gpu) {
    parse_gpu_memory(root, a);
  } else if (ipu) {
    parse_exchange(root, a);
  } else {
    const YamlMap grid = root.map("grid");
    constexpr const char* kWafer = "a WSE-3 is about 1,000 cores on a side";
    a.grid_width = positive_at_most(grid, "width", int64_t{1} << 14, kWafer);
    a.grid_height = positive_at_most(grid, "height", int64_t{1} << 14, kWafer);
    if (a.grid_width * a.grid_height > (int64_t{1} << 26))
      fail("{}: a {}x{} grid has more cores than tessera simulates ({} at most; {})", root.where("grid"), a.grid_width,
           a.grid_height, int64_t{1} << 26, kWafer);
    grid.finish();
    a.usable = {0, 0, a.grid_width, a.grid_height};
  }
  if (mesh && root.has("usable")) {
    const YamlMap u = root.map("usable");
    a.usable = {non_negative(u, "x"), non_negative(u, "y"), positive(u, "width"), positive(u, "height")};
    u.finish();
    if (a.usable.x + a.usable.width > a.grid_width || a.usable.y + a.usable.height > a.grid_height)
      fail("{}: region {}x{} at ({}, {}) does not fit in the {}x{} grid", root.where("usable"), a.usable.width,
           a.usable.height, a.usable.x, a.usable.y, a.grid_width, a.grid_height);
  }

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
  a.core.routes = mesh ? positive(core, "routes") : 0;
  if (ipu) a.core.sram_bytes_per_cycle = positive_unit(core, "sram_bandwidth", parse_bytes_per_cycle);
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

  if (mesh)
    parse_mesh_links(root, a);
  else
    parse_chip_link(root, a);

  const YamlMap energy = root.map("energy");
  a.energy.mac_pj = per_dtype(
      energy, "mac", [](const YamlMap& m, const std::string& k) { return parse_energy_pj(m.string(k), m.where(k)); });
  auto per_byte = [&](const std::string& key) {
    return parse_energy_pj_per_byte(energy.string(key), energy.where(key));
  };
  a.energy.sram_read_pj_per_byte = per_byte("sram_read");
  a.energy.sram_write_pj_per_byte = per_byte("sram_write");
  if (gpu) a.energy.hbm_pj_per_byte = per_byte("hbm");
  if (ipu) a.energy.exchange_pj_per_byte = per_byte("exchange");
  if (!mesh) {
    a.energy.offchip_pj_per_byte = per_byte("link");
  } else {
    a.energy.fabric_pj_per_byte_hop = per_byte("fabric_hop");
    a.energy.offchip_pj_per_byte = per_byte("offchip");
  }
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

  for (const auto& [dtype, _] : a.core.macs_per_cycle)
    if (!a.energy.mac_pj.contains(dtype))
      fail("{}: the core computes in {} but energy.mac has no {} entry", origin, dtype, dtype);
  root.finish();
  return a;
}

ArchSpec load_arch(const std::filesystem::path& path) { return parse_arch(read_text_file(path), path.string()); }

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
