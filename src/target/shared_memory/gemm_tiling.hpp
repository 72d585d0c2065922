// How a GPU-like chip tiles one matrix product over its SMs, shared by inference lowering
// (gpu_compiler.cpp) and the training model (gpu_training.cpp). Private to src/target/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/target/target.hpp"

namespace tessera::target {

// One GEMM's CTA tiling: `ctas` tiles (K split `split` ways) run one per SM at a time, in
// `waves`; every CTA computes a whole tile of tile_m x tile_n x tile_k (tile_m: the rows the matrix
// unit computes, padded to its height). A split K's partial sums are reduced one of two ways:
// dense GEMMs as CUTLASS's "parallel reduction split-K" [N17] — each partition writes its fp32
// partial sums of the whole output to a workspace, and a second kernel (a launch of its own) reads
// them back and writes the output; weight-only kernels as Marlin's "global reduction ... directly
// in the output buffer (temporarily downcasting FP32 accumulators to FP16) which is kept in L2"
// [N16] — in the same kernel, the partials written and read back at the activations' width.
struct GemmTiling {
  int64_t tile_m = 0, tile_n = 0, tile_k = 0, ctas = 0, waves = 0, split = 1;
  double cycles = 0;               // the waves' compute cycles
  double shared_memory_bytes = 0;  // per SM: the tile's operand pipeline
  double workspace_bytes = 0;      // split > 1: the partial sums the partitions write
  bool reduction_kernel = false;   // split > 1, dense: a second kernel reads the workspace back
  // What the GEMM kernel itself moves of the partial sums: written, and read back where it reduces
  // them itself.
  double kernel_workspace_bytes() const { return reduction_kernel ? workspace_bytes : 2 * workspace_bytes; }
};

// Whether a split-K workspace of `bytes` stays in L2 (the reduction reads it back right away):
// where the arch gives L2's bandwidth and the workspace fits in it. Otherwise it goes through HBM.
bool workspace_in_l2(const arch::ArchSpec& a, double bytes);

// Seconds to move `bytes` of a split-K workspace one way, through L2 or HBM.
double workspace_seconds(const arch::ArchSpec& a, double bytes);

// The reduction kernel of a dense split-K GEMM: a launch, reading the workspace and writing the
// `rows` x `cols` output of `element_bytes` values to HBM (0 where there is none).
double split_k_reduction_seconds(const arch::ArchSpec& a, const GemmTiling& t, double rows, double cols,
                                 double element_bytes);

// What a GEMM needs of the chip: its MAC rate per SM and cycle (the sustained one), the rows a
// matrix unit computes at least (0: only the rows there are), the activations' element size, the
// weight operand's bytes per element as it crosses L2 (its stored format: a weight-only kernel
// loads packed int8/int4 weights and dequantises them on the SM), and the share of the MACs
// performed (structured sparsity skips some); whether it is a weight-only kernel (Marlin-style: it
// reduces a split K itself).
struct GemmRate {
  double macs_per_sm_cycle = 0;
  int64_t matrix_rows = 0;
  double element_bytes = 2;
  double mac_density = 1;
  double weight_bytes = 2;
  bool weight_only = false;
};

// The rate of `dtype` products on this chip: macs_per_cycle at the arch's matmul_efficiency, its
// matrix_rows, and the element size of the format (of both operands).
GemmRate gemm_rate(const arch::ArchSpec& a, const std::string& dtype, double mac_density = 1);

// Cycles of one step of K for a CTA computing a rows x cols tile: its MACs at the SM's rate, or its
// operands' rows activations and cols weights at the SM's share of the L2 bandwidth (where the arch
// gives it), whichever is longer.
double tile_step_cycles(const arch::ArchSpec& a, const GemmRate& rate, int64_t rows, int64_t cols);

// [m, k] x [k, n] products of one shape [k, n], one per row group (a plain GEMM has one group),
// sharing the waves: the CUTLASS-style tile whose waves finish soonest among those whose pipeline
// fits the SM's shared memory. A tile reads (tile_m + tile_n) elements from L2 per step of K, so
// where the arch gives its L2 bandwidth, small tiles run at what L2 feeds them. `split_k` lets
// CTAs split K when the output tiles alone leave SMs idle, at the cost of the workspace traffic and
// the reduction kernel; a kernel takes at least `floor_cycles` (its memory time), and of tilings
// equally fast (reduction included) the first in the list wins. nullopt: no tile fits.
std::optional<GemmTiling> fastest_tiling(const arch::ArchSpec& a, const GemmRate& rate,
                                         const std::vector<int64_t>& groups, int64_t n, int64_t k, bool split_k,
                                         double floor_cycles = 0);

// Queries per FlashAttention CTA: FlashAttention-2 parallelises "across different thread blocks"
// over requests, heads and blocks of queries [N14]; blocks of 128 rows are tessera's assumption
// for every head size.
constexpr int64_t kFlashAttentionQueryBlock = 128;

// A fused attention kernel of `sequences` x `heads` x `tokens` queries on this chip: its CTAs (one
// per block of queries) and the waves they run in over the SMs.
struct AttentionWaves {
  int64_t ctas = 0, waves = 0;
  // What a partial last wave costs: the kernel takes waves x SMs CTA slots for ctas of work.
  double slowdown(int64_t sms) const {
    return ctas > 0 ? static_cast<double>(waves * sms) / static_cast<double>(ctas) : 1.0;
  }
};
AttentionWaves attention_waves(const arch::ArchSpec& a, int64_t sequences, int64_t heads, int64_t tokens);

// One matrix product as a kernel of its own (`tessera gemm`): the fastest tiling's waves or its
// HBM traffic (A, B and C once) and workspace writes, whichever is longer, after a kernel launch;
// a split K adds its reduction kernel.
GemmOutcome time_tiled_gemm(const arch::ArchSpec& a, const GemmWork& work);

}  // namespace tessera::target
