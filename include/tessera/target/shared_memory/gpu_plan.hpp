// The compiled plan for a shared_memory machine (GPUs): kernel by kernel, per GPU of a
// tensor-parallel group. It is what the GPU timing model reads; like program::Program it carries
// the arch and model descriptions it was compiled for.
//
// Execution model (docs/gpu-model.md): weights in HBM, every layer one kernel per op; decode runs
// one step for all `batch` requests at once; with tensor parallelism over `tensor_parallel` GPUs
// each GPU holds 1/t of every matrix (Megatron column/row split) and two allreduces per layer join
// the partial outputs over the links.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/arch/arch_spec.hpp"

namespace tessera::program {

struct Kernel {
  std::string name;  // "h.0.mlp.c_fc", "h.0.attention", "h.0.allreduce_mlp", ...
  // "gemm", "experts" (a grouped GEMM), "reduce" (a split-K GEMM's reduction), "attention", "elementwise",
  // "allreduce", "alltoall"
  std::string op;
  // gemm, experts: [m, k] x [k, n] on this GPU (experts: m the tokens of all its groups), tiled into CTAs of tile_m x
  // tile_n outputs over tile_k inputs (k split over several CTAs when the output alone would leave SMs idle), run in
  // waves. attention in prefill: ctas (one per block of queries of a head of a request) and waves; decode: 0.
  int64_t m = 0, n = 0, k = 0;
  int64_t tile_m = 0, tile_n = 0, tile_k = 0, ctas = 0, waves = 0;
  double macs = 0;               // MACs the tensor cores (or lanes) perform, after any skipped zeros
  double macs_per_position = 0;  // attention: grows with each cached position
  double hbm_bytes = 0;          // read + written
  double hbm_bytes_per_position = 0;
  double unpack_ops = 0;  // weights dequantised into the MAC dtype
  double link_bytes = 0;  // allreduce: payload per GPU; alltoall: what the busiest GPU sends or receives
  // gemm with K split: the partial sums it writes (and, a weight-only kernel, reads back to reduce
  // them itself); reduce: what it reads of them. Through L2 where they fit in it, else HBM.
  double workspace_bytes = 0;
  // Over every GPU of the group, where they differ (experts: each GPU runs its own experts'
  // tokens); 0: every GPU does what this one does.
  double macs_all_gpus = 0, hbm_bytes_all_gpus = 0;
};

struct GpuPlan {
  std::string arch_yaml, arch_origin, model_yaml, model_origin;
  PrecisionPolicy precision;
  double weight_bits = 32;
  bool skip_weight_zeros = false;
  int64_t prompt_tokens = 0, max_new_tokens = 0, batch = 1, tensor_parallel = 1;
  // GPUs of an expert-parallel group (compiler::GpuCompileOptions::expert_parallel): `batch` is
  // each one's requests, and figures are per GPU.
  int64_t expert_parallel = 1;
  std::string routing;  // a mixture of experts' token routing (compiler::Routing); "": the model has none
  // Per GPU: weights, KV cache at the full context for every request, and the largest activations.
  double weight_bytes = 0, kv_cache_bytes = 0, activation_bytes = 0;
  std::vector<Kernel> prefill;  // the whole prompt of every request, once
  std::vector<Kernel> decode;   // one token for every request; `*_per_position` scale with the context
};

std::string to_json(const GpuPlan& plan);
// Throws Error naming `origin` and the field on malformed input.
GpuPlan gpu_plan_from_json(const std::string& text, const std::string& origin);

}  // namespace tessera::program
