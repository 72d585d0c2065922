// The compiled plan for an exchange machine (an IPU): bulk-synchronous supersteps over tiles with
// private SRAM. Like program::Program it carries the arch and model descriptions it was compiled
// for; the BSP timing model reads it.
//
// Execution model (docs/ipu-model.md): weights, KV cache and activations stay in tile SRAM. Each
// matrix is split into pk x pn blocks over pk * pn tiles; a matmul is one superstep (the input
// slices arrive over the exchange, each tile multiplies its block) and, when k is split, a second
// that reduce-scatters the partial sums. Attention spreads (request, KV head) pairs and their
// cached positions over the tiles, then combines the partial softmax results. Norms gather their
// partial sums in two supersteps. Elementwise ops run on the tiles that hold the data, without a
// sync.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/arch/arch_spec.hpp"

namespace tessera::program {

// Work of one compute phase and the exchange before it.
struct BspWork {
  double macs = 0;            // on the matrix unit, after any skipped zeros
  double ops = 0;             // other arithmetic (softmax, norms, unpacking weights), at the fp32 MAC rate
  double sram_bytes = 0;      // read + written
  double exchange_bytes = 0;  // received over the exchange
};

struct Superstep {
  std::string name;              // "h.0.attn.c_attn", "h.0.attn.c_attn.reduce", "h.0.attention", ...
  std::string op;                // "matmul", "reduce", "attention", "norm", "elementwise", "embedding"
  bool sync = true;              // false: local work that continues the previous compute phase
  bool last_chunk_only = false;  // prefill: the LM head runs for the prompt's last chunk only
  int64_t tiles = 0;
  // How the arithmetic is split (the values depend on it): matmul: the k inputs over this many
  // tiles, their partial sums added in tile order; attention: each pair's positions over this
  // many tiles, their partial softmax results combined.
  int64_t k_parts = 1, position_parts = 1;
  BspWork tile, tile_per_position;    // the busiest tile; *_per_position scales with cached positions
  BspWork total, total_per_position;  // all tiles together (energy)
};

struct BspPlan {
  std::string arch_yaml, arch_origin, model_yaml, model_origin;
  PrecisionPolicy precision;
  double weight_bits = 32;
  bool skip_weight_zeros = false;
  int64_t prompt_tokens = 0, max_new_tokens = 0, batch = 1;
  std::string routing;  // a mixture of experts' token routing (compiler::Routing); "": the model has none
  int64_t layers = 0;   // transformer layers on this chip
  bool embedding = true, lm_head = true;
  // Per tile (the fullest): weights, KV cache at the full context of every request, activations.
  double weight_bytes = 0, kv_cache_bytes = 0, activation_bytes = 0;
  double chip_weight_bytes = 0;  // all tiles
  int64_t prefill_chunk_tokens = 1;
  std::vector<Superstep> prefill;  // one chunk of the prompt of every request; repeated
  std::vector<Superstep> decode;   // one token for every request
};

std::string to_json(const BspPlan& plan);
// Throws Error naming `origin` and the field on malformed input.
BspPlan bsp_plan_from_json(const std::string& text, const std::string& origin);

}  // namespace tessera::program
