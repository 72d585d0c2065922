// Timing and energy of a compiled mesh plan (timing-only: no tensor values are computed).
//
// Every step costs its busiest core's arithmetic at the arch's MAC rate plus its communication
// from the fast fabric model (route-walked link loads; see fabric.hpp) plus host I/O at the
// system bandwidth. A step marked `overlap` streams its collective alongside the arithmetic:
// max(compute, busiest port's traffic) + the collective's latency. Steps of one token are
// dependent, so their times add (batch 1).
// Energy is action counts times the arch's table: MACs, SRAM bytes, fabric word-hops, off-chip
// bytes. MACs are in the activations' dtype; pruned weights the arch skips are already left out
// by the compiler, and zero activations are left out here when the arch skips them and a run with
// values measured how many there were (TimingOptions::activation_density).
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tessera/compiler/routing.hpp"
#include "tessera/target/mesh2d/fabric.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::sim {

struct Energy {
  double compute_pj = 0, sram_pj = 0, fabric_pj = 0, offchip_pj = 0;
  double total_pj() const { return compute_pj + sram_pj + fabric_pj + offchip_pj; }
  Energy& operator+=(const Energy& o) {
    compute_pj += o.compute_pj, sram_pj += o.sram_pj, fabric_pj += o.fabric_pj, offchip_pj += o.offchip_pj;
    return *this;
  }
};

struct PhaseReport {
  int64_t passes = 0;  // prefill chunks, or decode tokens
  double cycles = 0, compute_cycles = 0, comm_cycles = 0, host_cycles = 0;
  double issue_cycles = 0;  // of compute_cycles: the vector instructions' overhead (core.vector_op_overhead)
  double compute_core_fraction = 0, comm_core_fraction = 0, idle_core_fraction = 0;  // of used core-time
  Energy energy;
};

struct StepHotspot {
  std::string step;
  int64_t busiest_port_words = 0;  // per decode pass
  Coord port;                      // where that port is (wafer coordinates)
  std::string port_name;           // east/west/north/south link, or eject/inject ramp
  int64_t word_hops = 0;
};

// One slice of the timeline: a step, or (after the first passes of a phase) a whole stage's
// share of a pass, so long runs stay small.
struct TraceSlice {
  std::string name;
  bool decode = false;
  int32_t stage = -1;  // -1: host I/O
  int64_t pass = 0;
  double start_cycle = 0, compute_cycles = 0, comm_cycles = 0, host_cycles = 0;
  std::string pattern;  // the step's collective, or "aggregate"
  int64_t macs = 0, words = 0, busiest_port_words = 0, word_hops = 0, host_bytes = 0;
  int64_t cores = 0;
};

// A region timed at the cycle tier inside a run at another tier: one stage's collectives (inside
// its region, and its hand-over to the next stage) wavelet by wavelet, and what the run's own tier
// gives for the same collectives, summed over every time they ran.
struct CycleRegionReport {
  std::string stage;  // empty: no region
  int64_t collectives = 0;
  double cycle_level_cycles = 0, reference_cycles = 0;
  double error() const { return reference_cycles > 0 ? reference_cycles / cycle_level_cycles - 1 : 0; }
};

struct MeshReport {
  std::string arch_name, model_name;
  PrecisionPolicy precision;
  double weight_bits = 32;
  bool skip_weight_zeros = false, skip_zero_activations = false;
  std::map<std::string, double> activation_density;  // as given in TimingOptions (measured with values)
  std::string fabric_model;                          // "analytic", "fast" or "cycle-level"
  CycleRegionReport cycle_region;                    // with TimingOptions::cycle_region
  double clock_hz = 0;
  int64_t cores_used = 0, cores_usable = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;
  PhaseReport prefill, decode;
  double time_to_first_token_s = 0;
  double decode_tokens_per_s = 0;  // per user (batch 1)
  double sram_per_core_bytes = 0;  // usable, after reserved space
  int64_t sram_high_water_bytes = 0;
  std::string sram_high_water_stage;
  std::vector<StepHotspot> busiest_steps;  // decode steps with the most loaded fabric port
  Energy decode_energy_per_token;
  std::vector<std::string> stage_names;
  // A mixture of experts' loads under the plan's routing: the "device" is a layer's region, whose
  // every core holds each expert (program.hpp), so they do not change its time.
  compiler::RoutingReport routing;
  // Per stage, over the whole run: arithmetic cycles of its busiest core, and decode energy per
  // token; every core of a stage does the same work, so these are also per-core figures.
  std::vector<double> stage_compute_cycles;
  std::vector<double> stage_decode_energy_pj;
  // Per stage: the cycles it is busy over the prefill (arithmetic, fabric and host I/O): the next
  // request's prompt can follow once the busiest stage has finished this one's.
  std::vector<double> stage_prefill_cycles;
  // Seconds the busiest stage is busy with one prompt: how soon the wafer takes the next one's.
  double prefill_interval_s() const {
    double busiest = 0;
    for (const double cycles : stage_prefill_cycles) busiest = std::max(busiest, cycles);
    return clock_hz > 0 ? busiest / clock_hz : 0;
  }
  std::vector<TraceSlice> trace;         // filled when asked for
  std::vector<TraceSlice> decode_steps;  // every step of the last decode pass (per-op figures)
  // With TimingOptions::link_loads: 32-bit words each link carried over the whole run, indexed
  // ((y * grid_width + x) * 4 + direction), directions east, west, north, south.
  std::vector<int64_t> link_words;
};

// Throws Error if the plan's embedded arch is not a mesh2d description.
// The fidelity tiers: Analytic (each collective in closed form, no routing: for sweeps), Fast (the
// flow tier: routed flows with port contention), CycleLevel (every wavelet, <= 64x64 meshes).
enum class FabricModel { Analytic, Fast, CycleLevel };

struct TimingOptions {
  bool record_trace = false;               // also return the timeline: every step of the first two and the last
                                           // pass of each phase, one slice per stage for the passes between
  FabricModel fabric = FabricModel::Fast;  // CycleLevel: every collective wavelet by wavelet (<= 64x64)
  std::function<void(int64_t done, int64_t total)> on_pass;  // after each prefill chunk and decode pass
  bool link_loads = false;  // also total the words every link carries over the run (for heatmaps)
  // A stage (by name, "layer 3") whose collectives are timed wavelet by wavelet inside a run at
  // the analytic or flow tier; their extent (not the wafer's) must be at most 256 x 256 routers.
  std::string cycle_region;
  // Fraction of non-zero inputs per linear layer ("attn.c_proj", "mlp.down_proj", "lm_head", ...),
  // measured by a run with values; where the arch skips zero activations, a matmul step whose name
  // ends with a key performs only that fraction of its MACs.
  std::map<std::string, double> activation_density;
};

MeshReport simulate_mesh_timing(const program::Program& plan, const TimingOptions& options = {});

// Cycles of one decode pass at the plan's full context, by stage, with the fast fabric model (or
// the analytic one, for a plan that will be timed with it): what
// the compiler scores candidate placements with, so that the placement it picks is the one this
// model times fastest.
std::vector<double> decode_stage_cycles(const program::Program& plan, FabricModel model = FabricModel::Fast);
// Cycles each stage is busy over the whole prompt's prefill, chunk after chunk (each chunk's
// attention over the positions before it), with the fast fabric model; steps that run for the
// last chunk only counted once.
std::vector<double> prefill_stage_cycles(const program::Program& plan, FabricModel model = FabricModel::Fast);

}  // namespace tessera::sim
