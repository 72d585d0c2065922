// The target-independent half of lowering (DESIGN.md, "graph-driven lowering"): a walk over an
// ir::Graph that groups its nodes into the embedding, the transformer layers and the head, fuses
// what every machine runs as one operation, and says for every projection whether its input is
// split across the chips or cores of a tensor-parallel layout. Each target then lowers these ops
// with its own rules (kernels on a GPU, supersteps on an IPU, placed steps and collectives on a
// mesh); no target reads a model family.
//
// Fusions (each a rule on the graph, not on names):
//   - projections (MatMul/Linear) of one layer that read the same tensor become one projection
//     whose outputs sit side by side (Llama's q|k|v and gate|up); a projection whose output is only
//     sliced keeps the slices as its parts (GPT-2's c_attn);
//   - RoPE nodes of one layer that share their positions become one op (q and k);
//   - SiLU whose only consumer is a Mul becomes a gated activation (SwiGLU's silu(gate) x up);
//   - the embedding lookups before the first layer and the Adds that sum them become one op;
//   - SliceCols of a fused projection's output is free (it names a part).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/ir/graph.hpp"

namespace tessera::compiler {

enum class LoweredKind { Embedding, Norm, Projection, Rope, Attention, Activation, Add, Mul, Experts };
// What a projection's part feeds (through RoPE, if any): attention's queries, its keys or values.
enum class PartRole { Other, Query, KeyValue };
const char* lowered_kind_name(LoweredKind kind);

struct LoweredOp {
  LoweredKind kind = LoweredKind::Add;
  std::string name;                 // the node's name (unnamed: "gelu%12"); fused: common prefix + stems + suffix
  std::string local;                // the name without its layer's prefix ("h.3.attn.c_attn" -> "attn.c_attn")
  ir::OpKind op = ir::OpKind::Add;  // Norm: LayerNorm or RmsNorm; Activation: Gelu or Silu
  int64_t width = 0;                // elements per token of the output (Rope: all rotated columns)
  // Projection: [k] -> [n] per token, n the sum of its parts' widths.
  int64_t k = 0, n = 0;
  bool bias = false;
  bool linear = false;               // weights stored [out, in] (nn.Linear); else [in, out] (Conv1D)
  std::vector<int64_t> part_widths;  // the outputs side by side (q|k|v: 3), or one
  std::vector<std::string> weights;  // the parameter of each fused node, in part order
  std::vector<PartRole> part_roles;  // per part
  int64_t attention_group = 1;       // query heads per KV head of the attention the parts feed
  int64_t input_group = 1;           // query heads per KV head of the attention whose output it reads
  // Tensor-parallel layouts (Megatron): a projection of a whole tensor splits its output columns
  // over the group; ops on a split tensor keep it split; a projection of a split tensor splits k
  // and reduces the partial outputs back to a whole tensor.
  bool split_input = false;  // a projection's or a norm's input
  bool split_output = false;
  // Norm: its parameter vectors (LayerNorm: scale and shift, 2; RMSNorm: 1).
  int64_t vectors = 0;
  // Attention; not causal: every query sees every key of the sequence (an encoder).
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  bool causal = true;
  // Experts (a mixture of experts' SwiGLU experts, ir::OpKind::MoeExperts): `experts` of them,
  // each token's output the weighted sum of its `top_k`; k the model width, n each expert's d_ff;
  // weights: w1, w3, w2 of expert 0, then of expert 1, ... The router is a projection of its own.
  int64_t experts = 0, top_k = 0;
  // Activation: silu(x) * y; Embedding: tables summed (GPT-2: tokens and positions, 2).
  bool gated = false;
  int64_t tables = 0;
  std::vector<int> nodes;  // the graph nodes the op stands for
};

struct LoweredLayer {
  std::string prefix;  // what every name of the layer starts with ("h.3.", "model.layers.3.")
  std::vector<LoweredOp> ops;
};

// A weight tensor of the graph as memory plans count it.
struct Parameter {
  enum class Place { Embedding, Layer, Head };  // where its first user is
  std::string name;
  int64_t elements = 0;
  int64_t k = 0;  // a matrix (projection weight or embedding table): inputs per output, which
                  // decides its stored format's scales; 0: a vector (norms, biases: fp32)
  Place place = Place::Layer;
  int64_t layer = -1;        // Place::Layer: which
  bool token_table = false;  // an embedding table looked up by the graph's "tokens"
};

struct LoweredModel {
  std::vector<LoweredOp> embedding;  // before the first layer
  std::vector<LoweredLayer> layers;
  std::vector<LoweredOp> head;  // after the last layer: the final norm and the LM head
  std::vector<Parameter> parameters;
  // An encoder (its attention is not causal): a run is one pass over the whole sequence, every
  // position of which reaches the head (a decoder's prompt needs only its last token's logits).
  bool encoder = false;

  // Every op in order: the embedding's, each layer's, the head's.
  std::vector<const LoweredOp*> ops() const;
  // The projection standing for `name` (a fused one included), or nullptr.
  const LoweredOp* projection(const std::string& name) const;
  // The projection that produces the output (the LM head).
  const LoweredOp& lm_head() const;
};

// Throws Error if a layer's nodes are not contiguous or come after the head's.
LoweredModel lower_graph(const ir::Graph& graph);

}  // namespace tessera::compiler
