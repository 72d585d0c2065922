// Lowers a GPT-2 or Llama model onto a shared_memory machine (one GPU, or a tensor-parallel group
// of them): per-GPU memory plan, and for every op a kernel with its GEMM tiling chosen to fit the
// SM's shared memory and to fill the SMs (docs/gpu-model.md).
#pragma once

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/compiler/fit.hpp"
#include "tessera/compiler/lowering.hpp"
#include "tessera/compiler/routing.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/shared_memory/gpu_plan.hpp"

namespace tessera::compiler {

struct GpuCompileOptions {
  int64_t prompt_tokens = 16;
  int64_t max_new_tokens = 64;
  int64_t micro_batch = 1;  // requests every pass computes together
  int64_t tensor_parallel = 1;
  PrecisionPolicy precision;
  Routing routing = Routing::Uniform;  // mixtures of experts: how tokens spread over the experts
  // The model graph, lowered (compiler/lowering.hpp); null: the graph `model` describes.
  const LoweredModel* lowered = nullptr;
  // A mixture of experts over a group of GPUs with data-parallel attention: each GPU serves its
  // own micro_batch requests with every weight but the experts whole, holds 1/expert_parallel of
  // each layer's experts, and sends its tokens to their experts' GPUs and back by all-to-all.
  // Needs tensor_parallel 1.
  int64_t expert_parallel = 1;
};

struct GpuCompileResult {
  FitStatus status;  // failure: what does not fit, by how much, and how many GPUs would
  program::GpuPlan plan;
};

// Throws Error on bad options (a format the GPU lacks, a TP degree that does not divide the heads,
// context beyond the model's).
GpuCompileResult compile_for_gpu(const ir::ModelConfig& model, const std::string& model_yaml,
                                 const std::string& model_origin, const arch::ArchSpec& arch,
                                 const std::string& arch_yaml, const std::string& arch_origin,
                                 const GpuCompileOptions& options);

}  // namespace tessera::compiler
