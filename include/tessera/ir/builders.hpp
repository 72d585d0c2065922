#pragma once

#include "tessera/ir/graph.hpp"
#include "tessera/ir/model_config.hpp"

namespace tessera::ir {

// Builds the graph of a GPT-2 or Llama decoder or a BERT encoder: inputs "tokens" and "positions"
// (i32[seq]; BERT also "token_types"), parameters named as in Hugging Face checkpoints, one output:
// logits f32[seq, vocab_size] (BERT: the masked-LM head's).
Graph build_model_graph(const ModelConfig& config);

}  // namespace tessera::ir
