#pragma once

#include "tessera/ir/graph.hpp"
#include "tessera/ir/model_config.hpp"

namespace tessera::ir {

// Builds the decoder graph of a GPT-2 or Llama model: inputs "tokens" and "positions" (i32[seq]),
// parameters named as in Hugging Face checkpoints, one output: logits f32[seq, vocab_size].
Graph build_model_graph(const ModelConfig& config);

}  // namespace tessera::ir
