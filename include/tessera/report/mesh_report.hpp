// Presenting a mesh run: a summary table for people, JSON (schema in docs/metrics.md) and CSV for
// tools, a Chrome/Perfetto timeline, and a self-contained HTML page.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::report {

// What the pictures need about each stage; the same whether built from a run or read back from
// its JSON.
struct StageFigures {
  std::string name;
  arch::Region region;
  int64_t weight_bytes = 0, kv_cache_bytes = 0, activation_bytes = 0;  // per core
  double compute_cycles = 0;                                           // whole run, per core
  double decode_energy_pj = 0;                                         // per token, whole stage
  int64_t bytes_per_core() const { return weight_bytes + kv_cache_bytes + activation_bytes; }
};

// Words each link carried over the run, down-sampled: cell (x, y) holds the most loaded link of
// that direction among the block x block cores it covers. Empty when not computed.
struct LinkMap {
  int64_t block = 1, width = 0, height = 0;
  std::array<std::vector<double>, 4> words;  // east, west, north, south; row-major cells
};

struct RunFigures {
  int64_t grid_width = 0, grid_height = 0;
  double usable_sram_per_core = 0;
  double total_cycles = 0;
  std::vector<StageFigures> stages;
  LinkMap links;
};

RunFigures run_figures(const program::Program& plan, const sim::MeshReport& report);

std::string summary_table(const sim::MeshReport& report);
std::string to_json(const program::Program& plan, const sim::MeshReport& report);
// One row per phase and one per step of the last decode pass.
std::string steps_csv(const sim::MeshReport& report);
// The timeline in Chrome/Perfetto trace-event JSON (opens in ui.perfetto.dev and chrome://tracing):
// one process per phase, one track per stage plus host I/O; times in simulated microseconds.
std::string trace_json(const sim::MeshReport& report);
// `tessera report`: one HTML page with no external resources, from a run's JSON. Throws Error
// naming `origin` if the JSON is not a tessera run.
std::string html_report(const std::string& run_json, const std::string& origin);

}  // namespace tessera::report
