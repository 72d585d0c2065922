// Timing and energy of a GPU plan (timing-only), kernel by kernel:
//   time = launch + max(tensor time, dequantisation, HBM time), or the link time of an allreduce,
// where tensor time = waves x one CTA tile's MACs / the SM's MAC rate (so partial tiles and the
// last partial wave cost what they occupy) and HBM time = bytes / peak bandwidth. Kernels run one
// after another. Energy = MACs x mac[dtype] + HBM bytes x hbm + link bytes x link.
#pragma once

#include <string>
#include <vector>

#include "tessera/compiler/routing.hpp"
#include "tessera/target/shared_memory/gpu_plan.hpp"

namespace tessera::sim {

struct GpuPhase {
  double seconds = 0;
  double compute_s = 0, memory_s = 0, link_s = 0, launch_s = 0;  // what bounds each kernel, summed
  double macs = 0, hbm_bytes = 0, link_bytes = 0;
  double energy_pj = 0;
};

struct GpuKernelTime {
  std::string name, op, bound;  // bound: compute, memory, link or launch
  double seconds = 0, macs = 0, hbm_bytes = 0;
  int64_t tile_m = 0, tile_n = 0, waves = 0;
};

struct GpuReport {
  std::string arch_name, model_name;
  // gpus: the group (tensor- or expert-parallel); batch: the requests it serves.
  int64_t gpus = 1, batch = 1, prompt_tokens = 0, generated_tokens = 0;
  int64_t expert_parallel = 1;  // > 1: experts over the group, attention data-parallel
  GpuPhase prefill, decode;     // decode: all passes
  double time_to_first_token_s = 0;
  double decode_tokens_per_s_per_user = 0, decode_tokens_per_s = 0;  // per request; all requests
  double decode_energy_per_token_pj = 0;                             // all GPUs, per generated token
  double decode_utilization = 0;                   // MACs done / (peak MAC rate x decode time), over the GPUs
  std::string decode_bound;                        // which of compute / memory / link / launch took most decode time
  double hbm_used_bytes = 0, hbm_bytes = 0;        // per GPU
  double decode_watts_per_gpu = 0, tdp_watts = 0;  // average decode power from the energy table; the board limit
  std::vector<GpuKernelTime> prefill_kernels, last_decode_kernels;  // in launch order
  compiler::RoutingReport routing;  // a mixture of experts: the routing the plan assumes
};

GpuReport simulate_gpu(const program::GpuPlan& plan);

}  // namespace tessera::sim
