// The functional data plane of a mesh plan: real fp32 values, computed core by core from the
// plan's steps and the model graph they were lowered from (compiler/lowering.hpp).
//
// Each step names its kernel and the graph op it computes; the kernel computes, for every core of
// its stage, from what that core holds: its weight tile, its KV cache, its copy of its line's
// segments. Values move between cores only through the plan's collectives (allreduce along a row
// or column, stage-to-stage transfer, host I/O), so a plan missing a transfer computes wrong
// values, and one reducing along the wrong axis is refused (the differential tests check both).
//
// Host layout (struct of arrays): every core of a line holds the same copy of a replicated
// segment, so the host stores it once per line; partial sums, tiles and KV caches, which differ
// per core, are stored per core, arranged so one step over a stage is a few long loops. The
// host computes a line's replicated values once; the timing model charges every core.
//
// Supported: the ops compiler/lowering.hpp produces for decoder layers (norms, projections with
// fused parts, RoPE, causal attention with grouped-query K/V stored per query head, residual adds,
// GELU and gated SiLU) under the plan's precision policy: every linear layer's input is rounded to
// the activations format and every key and value to the kv format as it enters the cache, exactly
// as ref::ReferenceExecutor does (weights arrive already in their format); arithmetic is fp32.
// Pruned weights and zero activations the arch skips are multiplied anyway on the host (adding
// zero products changes no value; the timing model counts only the work the machine does). The
// token (and position) embeddings live on the host (see docs/mesh-mapping.md); the host also
// samples from the logits it receives.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/base/error.hpp"
#include "tessera/ir/graph.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::sim {

class MeshDataPlane {
 public:
  // Throws Error if the plan's model is not supported, or weights are missing. `graph`: the model
  // graph the plan was compiled from (null: the one its model description builds); it and
  // `weights` must outlive the data plane.
  MeshDataPlane(const program::Program& plan, const model::Weights& weights, const ir::Graph* graph = nullptr);
  ~MeshDataPlane();
  MeshDataPlane(const MeshDataPlane&) = delete;
  MeshDataPlane& operator=(const MeshDataPlane&) = delete;

  // Same contract as ref::ReferenceExecutor::forward.
  std::span<const float> forward(std::span<const int32_t> tokens, bool last_only = false);
  int64_t position() const;
  int64_t max_context() const;
  int64_t vocab_size() const;
  void reset();

  int64_t cores_allocated() const;
  // One core's share of the stage that needs most: its weights, KV cache and activations.
  int64_t largest_arena_bytes() const;
  // Per linear layer ("attn.c_proj", "lm_head", ...): the fraction of its inputs so far that were
  // not zero after rounding (feeds sim::TimingOptions::activation_density).
  std::map<std::string, double> activation_density() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace tessera::sim
