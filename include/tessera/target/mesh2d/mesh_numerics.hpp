// The functional data plane of a mesh plan: real fp32 values, computed core by core.
//
// Every core of every stage owns one SRAM arena, allocated only for the cores the plan uses and
// sized by the same layout rules the compiler planned with (program/layout.hpp). A compute kernel
// is handed one core's arena and nothing else; values move between cores only through the plan's
// collectives (allreduce along a row or column, stage-to-stage transfer, host I/O), executed as bulk
// copies. A missing transfer therefore produces wrong numbers, which the differential tests catch.
//
// Supported: the GPT-2 and Llama families under the plan's precision policy: every linear layer's
// input is rounded to the activations format and every key and value to the kv format as it enters
// the cache, exactly as ref::ReferenceExecutor does (weights arrive already in their format);
// arithmetic is fp32. Where the plan says the arch skips pruned weights, each core keeps its tiles
// compressed and multiplies only the stored non-zeros; where it skips zero activations, a zero
// input skips its whole weight row. The token (and position) embeddings live on the host (see
// docs/mesh-mapping.md); the host also samples from the logits it receives.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/base/error.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::sim {

class MeshDataPlane {
 public:
  // Throws Error if the plan's model is not supported, or weights are missing.
  MeshDataPlane(const program::Program& plan, const model::Weights& weights);
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
  int64_t largest_arena_bytes() const;
  // Per linear layer ("attn.c_proj", "lm_head", ...): the fraction of its inputs so far that were
  // not zero after rounding (feeds sim::TimingOptions::activation_density).
  std::map<std::string, double> activation_density() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace tessera::sim
