// The tensor-graph IR: a topologically ordered list of nodes, each producing one tensor.
//
// A graph describes one forward step over a chunk of `seq` new tokens (the whole prompt in
// prefill, one token in decode). Shapes use kSeq for that symbolic token count. Attention nodes
// own a KV-cache slot (attribute `layer`) holding the keys and values of all earlier steps.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "tessera/base/error.hpp"

namespace tessera::ir {

inline constexpr int64_t kSeq = -1;              // the symbolic token count of a step
inline constexpr int64_t kMaxExperts = 256;      // experts of one mixture-of-experts layer, at most
inline constexpr int32_t kIgnoredTarget = -100;  // a training target no loss counts (PyTorch's ignore_index)

enum class DType { F32, I32 };
const char* dtype_name(DType dtype);

struct Shape {
  std::vector<int64_t> dims;
  bool operator==(const Shape&) const = default;
  int64_t rank() const { return static_cast<int64_t>(dims.size()); }
  // Element count with kSeq taken as `seq`.
  int64_t elements(int64_t seq = 1) const;
  std::string str() const;
};

enum class OpKind {
  Input,      // graph input (attr: none; name says which: "tokens", "positions" or "token_types")
  Param,      // a named weight tensor (name = Hugging Face tensor name)
  Embedding,  // (table[V,D], ids[S]) -> [S,D]
  Add,        // (a, b) same shape -> same
  Mul,        // (a, b) same shape -> same
  LayerNorm,  // (x[S,D], gamma[D], beta[D]) attr eps -> [S,D]
  RmsNorm,    // (x[S,D], gamma[D]) attr eps -> [S,D]
  MatMul,     // (x[S,K], w[K,N], bias[N]?) -> [S,N]   weights stored [in,out] (GPT-2 Conv1D)
  Linear,     // (x[S,K], w[N,K], bias[N]?) -> [S,N]   weights stored [out,in] (nn.Linear)
  Gelu,       // tanh approximation (GPT-2 "gelu_new"); with attr exact = 1 the erf form (BERT's "gelu")
  Silu,
  SliceCols,  // (x[S,N]) attrs start, size -> [S,size]
  Rope,       // (x[S,H*hd], positions[S]) attrs n_heads, head_dim, theta, scaling -> same
  Attention,  // (q[S,H*hd], k[S,KV*hd], v[S,KV*hd]) attrs n_heads, n_kv_heads, head_dim, layer
              // [, causal = 0: every query sees every key of the step (an encoder); default 1]
  // (x[S,D], router logits[S,E], then per expert w1[F,D], w3[F,D], w2[D,F]) attrs n_experts, top_k
  // -> [S,D]: each row through its top_k experts by router logit, summed with the softmax of those
  // logits as weights; an expert is w2 (silu(w1 x) * (w3 x)) (Mixtral's block-sparse MoE).
  MoeExperts,

  // Training ops (OpInfo::training): the loss, the backward ops ir/autodiff.hpp generates and the
  // optimizer updates. In a training step the seq rows are a batch of sequences laid end to end.
  // Rows whose target is kIgnoredTarget (an encoder's unmasked positions) count for nothing; S below
  // is the rows that count.
  CrossEntropy,      // (logits[S,V], targets i32[S]) -> [1]: mean over rows of logsumexp - logit[target]
  CrossEntropyGrad,  // (logits[S,V], targets i32[S], scale[1]) -> [S,V] = (softmax - onehot) * scale / S
  WeightGrad,        // (a[S,M], b[S,N]) -> [M,N] = a^T b, summed over the rows
  SumRows,           // (x[S,N]) -> [N]
  EmbeddingGrad,     // (dy[S,D], ids i32[S]) attr rows -> [rows,D]: dy's rows added at their ids
  LayerNormGrad,     // (x[S,D], gamma[D], dy[S,D]) attr eps -> dx[S,D]
  RmsNormGrad,       // (x[S,D], gamma[D], dy[S,D]) attr eps -> dx[S,D]
  NormScaleGrad,     // (x[S,D], dy[S,D]) attrs eps, centered (1: LayerNorm) -> dgamma[D]
  GeluGrad,          // (x, dy) [attr exact as Gelu's] -> dx
  SiluGrad,          // (x, dy) -> dx
  ConcatCols,        // (a[S,N1], b[S,N2], ...) -> [S, N1+N2+...]
  RopeGrad,          // (dy[S,H*hd], positions[S]) attrs as Rope -> dx: the inverse rotation
  AttentionGrad,     // (q, k, v, out, dy) attrs as Attention + recompute -> [S, (H+2KV)*hd] = dq|dk|dv
  GradNormScale,     // (grad, ...) attr max_norm -> [1] = min(1, max_norm / (global L2 norm + 1e-6))
  AdamW,             // (param, grad, lr[1], step i32[1], clip[1]?) attrs beta1, beta2, eps, weight_decay -> param
  SgdMomentum,       // (param, grad, lr[1], clip[1]?) attrs momentum, weight_decay -> param
};

// Where a node sits in a training step; inference graphs are all Forward.
enum class Phase { Forward, Recompute, Backward, Optimizer };
const char* phase_name(Phase phase);

using AttrValue = std::variant<int64_t, double>;
using Attrs = std::map<std::string, AttrValue>;

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;
};

struct Node {
  OpKind op = OpKind::Input;
  std::string name;
  std::vector<int> inputs;
  Attrs attrs;
  TensorType type;     // filled by shape inference
  int64_t layer = -1;  // the transformer layer the node belongs to; -1: before or after the layers
  Phase phase = Phase::Forward;

  int64_t int_attr(const std::string& key) const;
  double float_attr(const std::string& key) const;
  int64_t int_attr_or(const std::string& key, int64_t fallback) const {
    return attrs.contains(key) ? int_attr(key) : fallback;
  }
};

// The optional attributes' meanings, in one place.
inline bool is_exact_gelu(const Node& node) { return node.int_attr_or("exact", 0) != 0; }
inline bool is_causal(const Node& node) { return node.int_attr_or("causal", 1) != 0; }

// One row of the op table: the single place that says what an op is.
struct OpInfo {
  OpKind kind;
  const char* name;
  int min_inputs;
  int max_inputs;
  std::vector<const char*> required_attrs;
  bool training = false;  // a loss, backward or optimizer op: run by the reference trainer, costed by
                          // the targets' training models, never lowered for inference
};
const OpInfo& op_info(OpKind kind);
const std::vector<OpInfo>& op_table();

class Graph {
 public:
  int add_input(const std::string& name, DType dtype, Shape shape);
  int add_param(const std::string& name, Shape shape);
  // Adds an op node and infers its type; throws Error if the inputs do not satisfy the op's rule.
  int add(OpKind op, std::vector<int> inputs, Attrs attrs = {}, std::string name = {});
  void mark_output(int node);
  // Nodes added from now on belong to transformer layer `layer` (-1: outside the layers, the
  // default). Lowering groups a layer's nodes by it (compiler/lowering.hpp).
  void set_layer(int64_t layer) { layer_ = layer; }
  // Nodes added from now on belong to `phase` (autodiff sets it; the default is Forward).
  void set_phase(Phase phase) { phase_ = phase; }

  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& node(int id) const { return nodes_.at(static_cast<size_t>(id)); }
  const std::vector<int>& outputs() const { return outputs_; }
  int find_input(const std::string& name) const;  // -1 if absent
  int find_param(const std::string& name) const;  // -1 if absent

  // Re-checks the whole graph: topological order, op arity, attributes and every shape rule.
  Status verify() const;
  int64_t parameter_count() const;
  // Parameters one token uses: a mixture of experts' weights count top_k / n_experts of theirs.
  int64_t active_parameter_count() const;
  // Human-readable listing, one node per line ("%12 = matmul(%10, %11) {..} : f32[seq,768]").
  std::string dump() const;

 private:
  std::vector<Node> nodes_;
  std::vector<int> outputs_;
  int64_t layer_ = -1;
  Phase phase_ = Phase::Forward;
};

// Infers the output type of `node` from its inputs (whose types must be set); Status on mismatch.
Status infer_type(const Graph& graph, Node& node);

}  // namespace tessera::ir
