// Lowers a GPT-2 or Llama model onto an exchange machine (a Graphcore-like IPU): a per-tile
// memory plan and the bulk-synchronous supersteps of prefill and decode (program/bsp_plan.hpp).
#pragma once

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/compiler/fit.hpp"
#include "tessera/compiler/lowering.hpp"
#include "tessera/compiler/model_slice.hpp"
#include "tessera/compiler/routing.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/exchange/bsp_plan.hpp"

namespace tessera::compiler {

struct ExchangeCompileOptions {
  int64_t prompt_tokens = 16;
  int64_t max_new_tokens = 64;
  int64_t micro_batch = 1;  // requests every pass computes together
  PrecisionPolicy precision;
  ModelSlice slice;
  // Requests whose KV caches the chip holds (0: micro_batch). A pipeline stage computes one micro-batch
  // at a time but keeps the cache of every request in flight.
  int64_t resident_requests = 0;
  Routing routing = Routing::Uniform;  // mixtures of experts: how tokens spread over the experts
  // The model graph, lowered (compiler/lowering.hpp); null: the graph `model` describes.
  const LoweredModel* lowered = nullptr;
};

struct ExchangeCompileResult {
  FitStatus status;  // failure: what does not fit per tile, and how many chips would
  program::BspPlan plan;
};

// Throws Error on bad options (a format the chip lacks, a context beyond the model's).
ExchangeCompileResult compile_for_exchange(const ir::ModelConfig& model, const std::string& model_yaml,
                                           const std::string& model_origin, const arch::ArchSpec& arch,
                                           const std::string& arch_yaml, const std::string& arch_origin,
                                           const ExchangeCompileOptions& options);

}  // namespace tessera::compiler
