// Lowers a GPT-2 or Llama model onto a mesh2d machine: region placement, a per-core memory plan,
// a route budget check, and the prefill/decode step lists (see program.hpp for the layouts).
#pragma once

#include <string>
#include "tessera/compiler/fit.hpp"
#include "tessera/compiler/lowering.hpp"

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/compiler/model_slice.hpp"
#include "tessera/compiler/routing.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::compiler {

struct MeshCompileOptions {
  int64_t prompt_tokens = 16;
  int64_t max_new_tokens = 64;
  PrecisionPolicy precision;
  int64_t requests_in_flight = 1;      // one per layer stage at a time: each needs its own KV cache
  ModelSlice slice;                    // a pipeline stage of a multi-wafer system; default: the whole model
  Routing routing = Routing::Uniform;  // a mixture of experts' assumed routing (reported; see program.hpp)
  // The model graph, lowered (compiler/lowering.hpp); null: the graph `model` describes.
  const LoweredModel* lowered = nullptr;
  // Training with weights resident: the copies of every weight a core keeps (value, gradient and
  // AdamW's two moments: 4), and the bytes of saved activations of each layer and of the head,
  // spread over the stage's cores, so each region is sized for a training step. Inference: 1, 0.
  int64_t weight_copies = 1;
  int64_t saved_bytes_per_layer = 0, saved_bytes_head = 0;
  // Choose the regions for a training step's pace (the slowest stage's forward pass of one
  // prompt) instead of a decode token's latency through every stage.
  bool place_for_training = false;
  // How candidate placements (and prefill chunks) are timed: the fabric model the plan will be
  // simulated with.
  sim::FabricModel placement_model = sim::FabricModel::Fast;
  // Prompt tokens per prefill chunk; 0: of the sizes that fit, the fastest by that model.
  int64_t prefill_chunk_tokens = 0;
};

struct MeshCompileResult {
  FitStatus status;  // failure: what does not fit, where, by how much, what would
  program::Program program;
};

// Throws Error on bad options (a format the arch does not support, context beyond the model's, a
// prefill chunk that does not fit); returns a failed
// Status when the model does not fit the machine.
MeshCompileResult compile_for_mesh(const ir::ModelConfig& model, const std::string& model_yaml,
                                   const std::string& model_origin, const arch::ArchSpec& arch,
                                   const std::string& arch_yaml, const std::string& arch_origin,
                                   const MeshCompileOptions& options);

}  // namespace tessera::compiler
