// An immutable, validated machine description parsed from configs/arch/*.yaml (the keys every
// machine has here; each fabric's own sections are parsed by its target: FabricSection below).
//
// Fabrics: `mesh2d` (a Cerebras-like wafer: cores with private SRAM on a 2D mesh of links, entered
// from the host through channels on the east and west edges), `exchange` (a Graphcore-like IPU:
// tiles with private SRAM joined by an all-to-all exchange, run in bulk-synchronous supersteps;
// the grid is tiles x 1) and `shared_memory` (a GPU or a Trainium: SMs / NeuronCores with local
// memory, an L2 and HBM; the "core" is an SM and the grid is sms x 1). All hardware facts come
// from the file, which cites a source next to each number; nothing here hard-codes one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tessera/base/error.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/config/yaml_reader.hpp"

namespace tessera::arch {

struct Region {
  int64_t x = 0, y = 0, width = 0, height = 0;
  int64_t cores() const { return width * height; }
  bool operator==(const Region&) const = default;
};

struct CoreSpec {
  double sram_bytes = 0;                         // private SRAM per core
  double reserved_bytes = 0;                     // of which code, stack and runtime support use this much
  std::map<std::string, double> macs_per_cycle;  // by MAC input dtype ("fp16", "fp32", ...): the activation formats
  int64_t routes = 0;                            // routable colours (static routes) per core
  std::string accumulate = "fp32";               // accumulator of the MAC datapath
  std::vector<std::string> weight_formats;       // formats weights may be stored in (default: the MAC dtypes)
  std::vector<std::string> kv_formats;           // formats the KV cache may be stored in (default: the MAC dtypes)
  // Extra operations per stored weight when its format is not the MAC dtype (unpacking it), at
  // the MAC dtype's rate.
  double unpack_ops_per_weight = 0;
  // Rows a matrix unit works on at once, by MAC dtype: a GEMM with fewer rows (decode) still
  // costs this many (a tensor-core MMA is 16 rows tall; a 128x128 systolic array takes 128 cycles
  // to load a weight block). Missing: no padding.
  std::map<std::string, double> matrix_rows;
  double sram_bytes_per_cycle = 0;  // exchange: what a tile's SRAM delivers per cycle
  // mesh2d: cycles a core spends per vector instruction beyond streaming its elements through the
  // SIMD lanes (setting up its operand descriptors, the loop that issues it, the short vector's
  // partly used last cycle). 0: instructions cost only their elements.
  double vector_op_cycles = 0;
};

// Zero skipping the hardware does: only these patterns are stored compressed and skipped.
struct SparsitySupport {
  std::vector<std::string> weights;  // "unstructured", "2:4", "block16", ...
  bool activations = false;          // dynamic: multiplications by a zero activation are skipped
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

// A GPU's memory system (fabric shared_memory).
struct GpuSpec {
  double l2_bytes = 0;  // 0: none, or not published
  // What L2 delivers to the SMs, all together: where given (> 0), a GEMM tile runs no faster than
  // L2 feeds its operands (gemm_tiling.hpp); 0: not published, tiles run at the SM's rate.
  double l2_bytes_per_second = 0;
  double hbm_bytes = 0;             // capacity
  double hbm_bytes_per_second = 0;  // peak
  // The share of the peak HBM bandwidth a streaming read kernel sustains (refresh, bank and page
  // conflicts): a measured micro-benchmark where one is published, else 1 (the peak, an upper bound).
  double hbm_efficiency = 1;
  double kernel_launch_s = 0;  // fixed cost of one kernel
  double tdp_watts = 0;        // board power limit (0: not published)
  // The share of the tensor peak the best large matrix product sustains (clock under load, issue
  // stalls): a measured micro-benchmark where one is published, else 1 (the peak, an upper bound).
  double matmul_efficiency = 1;
  // The same for a fused attention kernel (FlashAttention: scores on chip, softmax between the two
  // products): its best published share of the peak; absent, matmul_efficiency.
  double attention_efficiency = 1;
  // What kernels that stream HBM are timed at.
  double sustained_hbm_bytes_per_second() const { return hbm_bytes_per_second * hbm_efficiency; }
};

// An IPU's all-to-all exchange (fabric exchange).
struct ExchangeSpec {
  double bytes_per_cycle = 0;  // per tile and direction: what one tile sends or receives per cycle
  double sync_cycles = 0;      // one bulk-synchronous sync across the tiles
};

// How a chip reaches the other chips of a system: pipeline stages, tensor-parallel peers.
// mesh2d: the wafer's host I/O (io.host_bandwidth, io.chip_latency); others: the `link` section.
struct ChipLinkSpec {
  double bytes_per_second = 0;  // per direction, the line rate
  double latency_s = 0;         // one message, or one step of a collective
  double efficiency = 1;        // share of the line rate collectives sustain (protocol overhead)
  double sustained_bytes_per_second() const { return bytes_per_second * efficiency; }
};

// The scale-out network between nodes of chips (shared_memory `network` section): chips in one
// node reach each other over the chip link; chips in different nodes over this.
struct NetworkSpec {
  int64_t chips_per_node = 0;   // 0: not described (every chip on the chip link)
  double bytes_per_second = 0;  // per chip, per direction
  double latency_s = 0;         // one message, or one step of a collective
};

struct EnergyTable {
  std::map<std::string, double> mac_pj;  // by dtype name
  double sram_read_pj_per_byte = 0;
  double sram_write_pj_per_byte = 0;
  double fabric_pj_per_byte_hop = 0;  // mesh2d
  double offchip_pj_per_byte = 0;     // host I/O (mesh2d); chip-to-chip links (exchange, shared_memory)
  double hbm_pj_per_byte = 0;         // shared_memory
  double exchange_pj_per_byte = 0;    // exchange: a byte sent from one tile to another
};

// What the chip costs in silicon (the optional `area` section): every core (SM, tile) is its logic
// plus its private SRAM at the process's SRAM density; the die adds SRAM shared by the cores (an
// L2) and fixed blocks (I/O, memory PHYs). `published_mm2` is the die area the vendor gives, for
// comparison only. Static power is leakage per mm2 of that area.
struct AreaSpec {
  bool described = false;
  std::string process;                    // "7nm": for people; the densities below carry the node
  int64_t units = 0;                      // cores, tiles or SMs on the die, the disabled and spare ones included
  double unit_logic_mm2 = 0;              // one core without its SRAM and without the MACs below
  std::map<std::string, double> mac_mm2;  // by dtype: one MAC per cycle of core.macs_per_cycle (missing: in unit_logic)
  double sram_mm2_per_byte = 0;           // SRAM macro density at this node
  double shared_sram_bytes = 0;           // SRAM outside the cores (L2)
  double fixed_mm2 = 0;                   // I/O, PHYs and whatever else the die holds beside its cores
  double published_mm2 = 0;               // 0: not published
  double leakage_w_per_mm2 = 0;           // static power density
};

struct ArchSpec {
  std::string name;
  std::string description;
  std::string fabric;  // mesh2d, exchange or shared_memory: the target that runs it (target/registry.hpp)
  double clock_hz = 0;
  int64_t grid_width = 0, grid_height = 0;  // the whole fabric, in cores
  Region usable;                            // the rectangle programs may use
  CoreSpec core;
  LinkSpec link;
  IoSpec io;
  EnergyTable energy;
  SparsitySupport sparsity;
  GpuSpec gpu;            // shared_memory only
  ExchangeSpec exchange;  // exchange only
  ChipLinkSpec chip_link;
  NetworkSpec network;
  AreaSpec area;

  double usable_sram_per_core() const { return core.sram_bytes - core.reserved_bytes; }
  double peak_macs_per_second(const std::string& dtype) const;
};

// A die's area by part, from its `area` section (all zero where the arch has none).
struct AreaBreakdown {
  double logic_mm2 = 0, core_sram_mm2 = 0, shared_sram_mm2 = 0, fixed_mm2 = 0;
  double total_mm2() const { return logic_mm2 + core_sram_mm2 + shared_sram_mm2 + fixed_mm2; }
};
AreaBreakdown area_of(const ArchSpec& arch);
// One core's (SM's, tile's) area: its logic, its MACs and its SRAM, mm2.
double unit_area_mm2(const ArchSpec& arch);

// What a fabric adds to the keys every machine has (name, clock, core, energy, sparsity): its own
// keys in `core` and `energy` and its own top-level sections. Each target implements one
// (src/target/<fabric>/<fabric>_arch.cpp); target/arch.hpp picks it by the file's `fabric:`.
class FabricSection {
 public:
  virtual ~FabricSection() = default;
  virtual const char* name() const = 0;
  // The sections that size the machine (its grid, tiles or SMs, and their links and memory);
  // called before `core`, which may refer to the grid.
  virtual void parse_sections(const config::YamlMap& root, ArchSpec& a) const = 0;
  virtual void parse_core(const config::YamlMap& core, ArchSpec& a) const = 0;
  virtual void parse_energy(const config::YamlMap& energy, ArchSpec& a) const = 0;
  // The keys (dotted paths) and values that give `a` `scale` times as many cores (tiles, SMs),
  // shaped as the fabric shapes them; throws Error when no such machine can be described.
  virtual std::map<std::string, std::string> resized(const ArchSpec& a, double scale) const = 0;
};

// Parses a description whose `fabric:` is `fabric`'s; throws Error naming the file, line and key
// of anything missing, malformed or unknown.
ArchSpec parse_arch(const config::YamlMap& root, const FabricSection& fabric);

// Whether `arch` can run `policy`: a failure names each format the chip lacks and what it has.
Status check_precision(const ArchSpec& arch, const PrecisionPolicy& policy);
// Whether the hardware skips (and stores compressed) the zeros of weights pruned with `pattern`.
bool skips_weight_zeros(const ArchSpec& arch, const SparsityPattern& pattern);

// A precision policy file: keys weights, scales, group, activations, kv, prune (all optional;
// defaults fp32, auto, 32, fp32, fp32, none). Throws Error naming file, line and key.
PrecisionPolicy load_precision_policy(const std::filesystem::path& path);

}  // namespace tessera::arch
