// The compiled plan for a mesh2d machine: the only contract between the compiler and the
// simulator. It is self-contained (it embeds the arch and model descriptions it was compiled
// for) and serializes to JSON, so `tessera compile -o plan.json` and `tessera simulate plan.json`
// can run apart.
//
// Execution model (docs/mesh-mapping.md): layer-pipelined, weights resident. Each stage (a
// transformer layer, or the LM head) owns a rectangle of cores. Activations alternate between
// two layouts: "rows" (a vector split over the region's rows, replicated along each row) and
// "cols" (split over columns, replicated down each column). A matmul reads one layout and its
// partial sums are allreduced along the other axis, producing the other layout, so no transposes
// are needed (WaferLLM's decode layout). Prefill runs the same steps on all prompt tokens at once.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"

namespace tessera::program {

enum class Pattern { None, AllreduceX, AllreduceY, StageTransfer, HostIn, HostOut };
const char* pattern_name(Pattern p);

// How a core's vector instructions are counted, by the compiler's steps and the GEMM kernels
// alike: `per_element` operations on each element of an a x b block, each instruction running
// along the block's longer side, so `per_element` instructions per element of the shorter (a
// product's output block takes one multiply-add per element of K).
inline int64_t vector_instructions(int64_t per_element, int64_t a, int64_t b) { return per_element * std::min(a, b); }

// One step of a phase on one stage's region. Costs are for the busiest core of the region; the
// `*_per_slot` terms grow with the number of cached context slots each core holds
// (ceil(context / context_split)), which is how attention's cost depends on the position.
struct Step {
  std::string name;
  int32_t stage = 0;
  std::string op;  // "matmul", "norm", "attention", "experts", "elementwise", "transfer", "host"
  // What every core of the stage computes before the collective (the data plane's kernel):
  // layernorm.mean, layernorm.variance, rmsnorm, projection, rope, attention.scores, attention.max,
  // attention.sum, attention.values, add, mul, activation, and a mixture of experts' experts.route,
  // experts.gate_up, experts.activation, experts.down; "" for transfers and host I/O. `node`
  // names the op of the lowered model graph it computes (compiler/lowering.hpp).
  std::string kernel, node;
  int64_t macs = 0;  // multiply-accumulates on the busiest core
  int64_t macs_per_slot = 0;
  int64_t elementwise = 0;  // other arithmetic operations on the busiest core
  int64_t elementwise_per_slot = 0;
  // Vector instructions the busiest core issues for them (each charged the arch's
  // vector_op_overhead on top of its elements).
  int64_t vector_ops = 0;
  int64_t vector_ops_per_slot = 0;
  int64_t sram_bytes = 0;  // SRAM bytes read + written by all cores of the region
  int64_t sram_bytes_per_slot = 0;
  int64_t total_macs = 0;  // over all cores (energy)
  int64_t total_macs_per_slot = 0;
  Pattern pattern = Pattern::None;
  int64_t words = 0;  // 32-bit words each line contributes to the collective
  int64_t words_per_slot = 0;
  int32_t group = 0;  // allreduce tree group size (of each segment's tree, if segmented)
  // An allreduce in independent segments of its lines: the first and last position (inclusive,
  // along the line) of each, reduced and broadcast among themselves; the positions in none take
  // no part. Empty: each whole line.
  std::vector<std::array<int32_t, 2>> segments;
  int32_t to_stage = -1;         // StageTransfer destination
  int64_t host_bytes = 0;        // HostIn / HostOut
  bool last_chunk_only = false;  // prefill: runs for the prompt's last chunk only (the LM head)
  bool overlap = false;          // the collective streams outputs as the cores produce them
};

// A number that differs between steps whose segments differ (0: unsegmented), for cost caches.
int64_t segments_signature(const Step& s);

// One layer (or the LM head) on a rectangle of cores. Stages whose regions are equal share those
// cores (several layers per region): they run one after another, each core holds every one's
// weights and KV cache, and one set of activation buffers serves them all, counted on the first
// of them (the others' activation_bytes are 0). Regions are otherwise disjoint.
struct Stage {
  std::string name;
  arch::Region region;
  int64_t weight_bytes = 0;  // per core (the busiest)
  int64_t kv_cache_bytes = 0;
  int64_t activation_bytes = 0;  // activations, double buffers and partial sums
  int64_t routes = 0;            // colours used per core
  int64_t context_split = 1;     // the KV cache is split over this many rows
  int64_t total_weight_bytes = 0;
  int64_t bytes_per_core() const { return weight_bytes + kv_cache_bytes + activation_bytes; }
};

struct Program {
  std::string arch_yaml;  // the machine description, verbatim
  std::string arch_origin;
  std::string model_yaml;  // the model config, verbatim
  std::string model_origin;
  PrecisionPolicy precision;           // formats of weights, activations (the MAC dtype) and KV; pruning
  double weight_bits = 32;             // bits per stored weight element of a matrix, compression included
  bool skip_weight_zeros = false;      // the arch skips the pruning pattern's zeros (stored compressed)
  bool skip_zero_activations = false;  // the arch skips multiplications by zero activations
  int64_t prompt_tokens = 0;
  int64_t max_new_tokens = 0;
  int64_t max_context = 0;
  // Requests the plan holds KV caches for (timing-only beyond 1), and the part of the model it
  // runs: a pipeline stage of a multi-chip system has fewer layers, no embedding or no LM head.
  int64_t batch = 1;
  int64_t layers = 0;
  bool embedding = true, lm_head = true;
  // A mixture of experts' assumed routing (compiler/routing.hpp; "" without experts). Every core of
  // a layer's region holds its tile of each expert, so it changes what the report says about the
  // experts' loads, not the time.
  std::string routing;
  std::vector<Stage> stages;
  int64_t prefill_chunk_tokens = 1;  // prefill processes the prompt this many tokens at a time
  std::vector<Step> prefill;         // one chunk of prefill; repeated until the prompt is consumed
  std::vector<Step> decode;          // runs once per generated token
};

// For each stage, the index of the first stage on the same cores (itself unless it shares a region).
std::vector<size_t> region_owners(const Program& plan);
// SRAM bytes per core of each stage's region: every stage on it, as Stage describes.
std::vector<int64_t> region_bytes_per_core(const Program& plan);

std::string to_json(const Program& program);
// Throws Error naming `origin` and the field on malformed input.
Program from_json(const std::string& text, const std::string& origin);

// Where each stage sits and what a core of it holds, for people (`tessera compile --arch`).
std::string placement_table(const Program& plan);

}  // namespace tessera::program
