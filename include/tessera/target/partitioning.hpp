// The order of the arithmetic a compiled GPU or IPU plan performs, as a ref::Partitioning: the
// reference executor run with it computes the values that machine computes (the same formats,
// its partial sums added in its order). Wafers have their own data plane (mesh_numerics.hpp).
#pragma once

#include "tessera/compiler/lowering.hpp"
#include "tessera/ir/graph.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/target/exchange/bsp_plan.hpp"
#include "tessera/target/shared_memory/gpu_plan.hpp"

namespace tessera::sim {

// Tokens per FlashAttention key block on a GPU: tessera's assumption (FlashAttention-2 uses
// blocks of 64 to 128 keys depending on the head size).
constexpr int64_t kFlashAttentionKeyBlock = 128;

// IPU: each matrix's k split over its pk tiles; each (request, KV head) pair's positions in
// contiguous blocks over its tiles. Throws Error if the plan names a matrix `graph` lacks.
ref::Partitioning partitioning(const program::BspPlan& plan, const ir::Graph& graph);
// Training with values on an IPU: each matrix's forward products split k over its pk tiles (as in
// prefill), its input gradient's sums over the n blocks of its pn tiles.
ref::Partitioning training_partitioning(const program::BspPlan& plan, const ir::Graph& graph);
// Adds a projection of the lowered model (a fused one included) whose k is split into `k_parts`
// and whose n outputs lie in blocks of ceil(n / n_blocks): every weight it stands for gets
// k_parts for its forward products and, for its input gradient, the blocks its columns span.
void add_training_split(ref::Partitioning& p, const compiler::LoweredOp& projection, int64_t k_parts, int64_t n_blocks);
// GPU: split-K parts per GEMM (per phase), tensor-parallel partial sums for row-split matrices,
// FlashAttention key blocks.
ref::Partitioning partitioning(const program::GpuPlan& plan, const ir::Graph& graph);

}  // namespace tessera::sim
