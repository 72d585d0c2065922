// Reading a model exported with torch.onnx (an ONNX ModelProto, opset <= 17) as one of tessera's
// model families. tessera does not interpret ONNX graphs: it raises the exported op graph to the
// transformer it describes — the token and position tables, each block's norms, projections,
// attention and MLP, the LM head — checks that the graph computes exactly that, and hands back the
// shape and the weights under tessera's (Hugging Face GPT-2) tensor names. Every machine then runs
// the model through its own lowering.
//
// Raised: GPT-2-style decoders (learned positions, pre-LayerNorm blocks, fused q|k|v projection,
// causal softmax attention, tanh-approximated GELU MLP, LM head tied to the token table) as
// torch.onnx exports them from nn.Embedding / nn.LayerNorm / nn.Linear modules, with a static or a
// dynamic sequence axis. Anything else is refused naming the node and its op.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::onnx_import {

struct ImportedTensor {
  std::string name;  // tessera's parameter name ("h.0.attn.c_attn.weight")
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major; projection weights [in, out] as GPT-2 stores them
};

struct ImportedModel {
  std::string family = "gpt2";
  int64_t vocab_size = 0, context_length = 0, d_model = 0, n_layers = 0, n_heads = 0, d_ff = 0;
  double norm_eps = 1e-5;
  std::vector<ImportedTensor> tensors;
};

// `bytes`: the file's contents; `origin` names it in errors. Throws Error naming the file, the node
// and its op for a graph that is not a model tessera raises, and for a file that is not ONNX.
ImportedModel import_onnx(const std::string& bytes, const std::string& origin);

// The model's shape as the keys of tessera's model config YAML (no name, weights or tokenizer).
std::string shape_yaml(const ImportedModel& model);

}  // namespace tessera::onnx_import
