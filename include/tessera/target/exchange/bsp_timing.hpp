// Timing and energy of an exchange (IPU) plan, superstep by superstep (timing-only):
//   superstep = sync (when it has one) + exchange bytes / the tile's exchange rate
//             + max(MACs / MAC rate + other ops / fp32 rate, SRAM bytes / the tile's SRAM rate)
// for the busiest tile; supersteps run one after another (BSP: compute, sync, exchange do not
// overlap). Energy = MACs x mac[dtype] + SRAM bytes x sram + exchange bytes x exchange.
#pragma once

#include <string>
#include <vector>

#include "tessera/compiler/routing.hpp"
#include "tessera/target/exchange/bsp_plan.hpp"

namespace tessera::sim {

struct BspPhase {
  double seconds = 0;
  double sync_s = 0, exchange_s = 0, compute_s = 0;
  double macs = 0, exchange_bytes = 0, sram_bytes = 0;
  double energy_pj = 0;
};

// One superstep's time on the busiest tile, and its work over all tiles.
struct SuperstepTime {
  std::string name, op, bound;  // bound: compute, exchange or sync
  double seconds = 0, macs = 0, exchange_bytes = 0;
};

struct BspReport {
  std::string arch_name, model_name;
  int64_t batch = 1, prompt_tokens = 0, generated_tokens = 0, supersteps_per_token = 0;
  BspPhase prefill, decode;  // decode: all passes
  double time_to_first_token_s = 0;
  double decode_tokens_per_s_per_user = 0, decode_tokens_per_s = 0;
  double decode_energy_per_token_pj = 0;
  double decode_utilization = 0;               // MACs done / (peak MAC rate x decode time)
  std::string decode_bound;                    // compute, exchange or sync: which took most decode time
  double tile_bytes_used = 0, tile_bytes = 0;  // the fullest tile, and a tile's SRAM
  std::vector<SuperstepTime> prefill_steps;    // the prompt's last chunk, in order
  std::vector<SuperstepTime> last_decode_steps;
  compiler::RoutingReport routing;  // a mixture of experts: the routing the plan assumes (devices: experts)
};

BspReport simulate_bsp(const program::BspPlan& plan);

// A tile's arithmetic rates: MACs per cycle in the MAC dtype, and other ops at the fp32 rate (the
// MAC dtype's where the chip has no fp32).
struct BspRates {
  double macs_per_cycle = 1, ops_per_cycle = 1;
};
BspRates bsp_rates(const arch::ArchSpec& a, const std::string& mac_dtype);

// One superstep of the busiest tile doing `tile`, timed as the header says.
struct SuperstepParts {
  double sync_s = 0, exchange_s = 0, compute_s = 0;
  double seconds() const { return sync_s + exchange_s + compute_s; }
};
SuperstepParts superstep_parts(const arch::ArchSpec& a, const BspRates& rates, const program::BspWork& tile, bool sync);

}  // namespace tessera::sim
