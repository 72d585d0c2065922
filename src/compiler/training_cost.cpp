#include "tessera/compiler/training_cost.hpp"

#include <map>
#include <optional>

namespace tessera::compiler {

using ir::OpKind;

void PhaseCost::add(const PhaseCost& o) {
  forward_flops += o.forward_flops, recompute_flops += o.recompute_flops, backward_flops += o.backward_flops;
  parameters += o.parameters, saved_elements += o.saved_elements;
  forward_elementwise += o.forward_elementwise, backward_elementwise += o.backward_elementwise;
  forward_whole_rows += o.forward_whole_rows, backward_whole_rows += o.backward_whole_rows;
  saved_whole_rows += o.saved_whole_rows;
  forward_moved += o.forward_moved, backward_moved += o.backward_moved;
  forward_ops += o.forward_ops, backward_ops += o.backward_ops;
  forward_attention_pairs += o.forward_attention_pairs, recompute_attention_pairs += o.recompute_attention_pairs;
  rescored_attention_pairs += o.rescored_attention_pairs, backward_attention_pairs += o.backward_attention_pairs;
  forward_attention_flops += o.forward_attention_flops, backward_attention_flops += o.backward_attention_flops;
  bidirectional = bidirectional || o.bidirectional;
  for (const MatrixProduct& p : o.products) add_product(p);
}

void PhaseCost::add_product(const MatrixProduct& p) {
  for (MatrixProduct& q : products)
    if (q.same_shape(p)) {
      q.count += p.count;
      return;
    }
  products.push_back(p);
}

PhaseCost TrainingCost::total() const {
  PhaseCost t = outside;
  for (const auto& l : layers) t.add(l);
  return t;
}

double TrainingCost::model_flops() const {
  const PhaseCost t = total();
  return t.forward_flops + t.backward_flops;
}

namespace {

// The query-key pairs one head of an attention node scores over a sequence: a causal triangle, or
// an encoder's square.
double attention_pairs(const ir::Node& n, double seq) { return ir::is_causal(n) ? seq * (seq + 1) / 2 : seq * seq; }

// Whether a node is an elementwise op (norms, activations, RoPE, residual adds and their
// gradients): not a matrix product, attention, the loss, or a node that moves no data.
bool elementwise(OpKind op) {
  switch (op) {
    case OpKind::MatMul:
    case OpKind::Linear:
    case OpKind::WeightGrad:
    case OpKind::Attention:
    case OpKind::AttentionGrad:
    case OpKind::MoeExperts:
    case OpKind::CrossEntropy:
    case OpKind::CrossEntropyGrad:
    case OpKind::Input:
    case OpKind::Param:
    case OpKind::SliceCols:
    case OpKind::ConcatCols:
    case OpKind::Embedding:
    case OpKind::AdamW:
    case OpKind::SgdMomentum:
    case OpKind::GradNormScale:
      return false;
    default:
      return true;
  }
}

// Whether an op sees each token's whole hidden state however a layer's matrices are split: norms,
// residual adds and their gradients (what Megatron-style tensor parallelism leaves unsplit).
bool whole_rows(OpKind op) {
  switch (op) {
    case OpKind::Add:
    case OpKind::LayerNorm:
    case OpKind::RmsNorm:
    case OpKind::LayerNormGrad:
    case OpKind::RmsNormGrad:
    case OpKind::NormScaleGrad:
      return true;
    default:
      return false;
  }
}

// FLOPs of one node over a sequence of s tokens (2 per multiply-add; elementwise ops a few per element).
double node_flops(const ir::Graph& g, const ir::Node& n, double s) {
  auto cols = [&](int id) { return static_cast<double>(g.node(id).type.shape.dims.back()); };
  switch (n.op) {
    case OpKind::MatMul:
    case OpKind::Linear:
      return 2 * s * cols(n.inputs[0]) * static_cast<double>(n.type.shape.dims.back());
    case OpKind::WeightGrad:
      return 2 * s * cols(n.inputs[0]) * cols(n.inputs[1]);
    case OpKind::Attention:  // q k^T and p v
      return 4 * attention_pairs(n, s) * static_cast<double>(n.int_attr("n_heads") * n.int_attr("head_dim"));
    case OpKind::AttentionGrad: {  // dP = dO v^T, dq, dk, dv; and q k^T again when scores are recomputed
      const double products = n.int_attr("recompute") != 0 ? 5 : 4;
      return 2 * products * attention_pairs(n, s) * static_cast<double>(n.int_attr("n_heads") * n.int_attr("head_dim"));
    }
    case OpKind::CrossEntropy:
    case OpKind::CrossEntropyGrad:
      return 4 * s * cols(n.inputs[0]);
    default:  // elementwise ops: a few operations per element; the rest none
      if (!elementwise(n.op)) return 0;
      return 8 * static_cast<double>(n.type.shape.elements(1)) * (n.type.shape.dims[0] == ir::kSeq ? s : 1);
  }
}

// Whether each forward weight product is row-parallel under Megatron-style tensor parallelism (its
// output feeds a residual add), by the node's weight (a Param input) and by the node's name (which
// its weight gradient's name extends with ".d_weight").
struct WeightSplits {
  std::map<int, bool> row_parallel_by_weight;
  std::map<std::string, const ir::Node*> forward_by_name;
};

WeightSplits weight_splits(const ir::Graph& g) {
  std::vector<bool> feeds_add(g.nodes().size(), false);
  for (const auto& n : g.nodes())
    if (n.op == OpKind::Add && n.phase == ir::Phase::Forward)
      for (int in : n.inputs) feeds_add[static_cast<size_t>(in)] = true;
  WeightSplits s;
  for (size_t id = 0; id < g.nodes().size(); ++id) {
    const ir::Node& n = g.node(static_cast<int>(id));
    if (n.phase != ir::Phase::Forward || (n.op != OpKind::MatMul && n.op != OpKind::Linear)) continue;
    if (g.node(n.inputs[1]).op != OpKind::Param) continue;
    s.row_parallel_by_weight[n.inputs[1]] = feeds_add[id];
    s.forward_by_name[n.name] = &n;
  }
  return s;
}

// A weight product's shape per sequence of s tokens and the dimension tensor parallelism splits;
// nullopt for nodes that are not products with a weight.
std::optional<MatrixProduct> weight_product(const ir::Graph& g, const ir::Node& n, int64_t s, const WeightSplits& w) {
  using Dim = MatrixProduct::Dim;
  auto cols = [&](int id) { return g.node(id).type.shape.dims.back(); };
  MatrixProduct p;
  p.forward = n.phase == ir::Phase::Forward;
  if (n.op == OpKind::MatMul || n.op == OpKind::Linear) {
    const auto it = w.row_parallel_by_weight.find(n.inputs[1]);
    if (it == w.row_parallel_by_weight.end()) return std::nullopt;
    p.m = s, p.k = cols(n.inputs[0]), p.n = n.type.shape.dims.back();
    // A forward (or recomputed) product splits the weight's outputs (column) or inputs (row); the
    // input gradient dx = dy W^T runs the other way round.
    const bool backward = n.phase == ir::Phase::Backward;
    p.split = it->second != backward ? Dim::K : Dim::N;
    return p;
  }
  if (n.op != OpKind::WeightGrad) return std::nullopt;
  const std::string suffix = ".d_weight";
  if (n.name.size() <= suffix.size()) return std::nullopt;
  const auto fwd = w.forward_by_name.find(n.name.substr(0, n.name.size() - suffix.size()));
  if (fwd == w.forward_by_name.end()) return std::nullopt;
  p.m = cols(n.inputs[0]), p.k = s, p.n = cols(n.inputs[1]), p.tokens = Dim::K;
  // dW = x^T dy (MatMul, dy's columns are n) or dy^T x (Linear, dy's columns are m): a column-
  // parallel weight splits dy's side, a row-parallel one x's side.
  const Dim dy_side = fwd->second->op == OpKind::MatMul ? Dim::N : Dim::M;
  const Dim x_side = dy_side == Dim::N ? Dim::M : Dim::N;
  p.split = w.row_parallel_by_weight.at(fwd->second->inputs[1]) ? x_side : dy_side;
  return p;
}

// Activation elements a node reads and writes over a sequence of s tokens (parameters and inputs
// move no activations).
double moved_elements(const ir::Graph& g, const ir::Node& n, int64_t seq) {
  if (n.op == OpKind::Param || n.op == OpKind::Input) return 0;
  auto elements = [&](const ir::Node& v) {
    if (v.op == OpKind::Param) return 0.0;
    return static_cast<double>(v.type.shape.elements(v.type.shape.dims[0] == ir::kSeq ? seq : 1));
  };
  double moved = elements(n);
  for (int in : n.inputs) moved += elements(g.node(in));
  return moved;
}

// Activation elements an elementwise node reads and writes; 0 for every other node.
double elementwise_elements(const ir::Graph& g, const ir::Node& n, int64_t seq) {
  return elementwise(n.op) ? moved_elements(g, n, seq) : 0;
}

}  // namespace

TrainingCost training_cost(const ir::TrainingGraph& t, int64_t seq) {
  const ir::Graph& g = t.graph;
  TrainingCost cost;
  cost.seq = seq;
  const auto s = static_cast<double>(seq);
  int64_t layers = 0;
  for (const auto& n : g.nodes()) layers = std::max(layers, n.layer + 1);
  cost.layers.resize(static_cast<size_t>(layers));
  auto bucket = [&](int64_t layer) -> PhaseCost& {
    return layer >= 0 ? cost.layers[static_cast<size_t>(layer)] : cost.outside;
  };
  const WeightSplits splits = weight_splits(g);
  std::vector<bool> read_by_backward(g.nodes().size(), false);
  for (const auto& n : g.nodes())
    if (n.phase == ir::Phase::Backward || n.phase == ir::Phase::Recompute)
      for (int in : n.inputs) read_by_backward[static_cast<size_t>(in)] = true;
  for (size_t id = 0; id < g.nodes().size(); ++id) {
    const ir::Node& n = g.node(static_cast<int>(id));
    PhaseCost& c = bucket(n.layer);
    const double flops = node_flops(g, n, s);
    if (const auto product = weight_product(g, n, seq, splits)) c.add_product(*product);
    const bool whole = whole_rows(n.op);
    const double elementwise_moved = elementwise_elements(g, n, seq);
    const double whole_moved = whole ? elementwise_moved : 0;
    const bool attention = n.op == OpKind::Attention || n.op == OpKind::AttentionGrad;
    const double pairs =
        attention ? static_cast<double>(n.int_attr("n_heads")) * attention_pairs(n, static_cast<double>(seq)) : 0;
    if (attention && !ir::is_causal(n)) c.bidirectional = true;
    if (attention) (n.phase == ir::Phase::Forward ? c.forward_attention_flops : c.backward_attention_flops) += flops;
    if (n.op == OpKind::Attention)
      (n.phase == ir::Phase::Forward ? c.forward_attention_pairs : c.recompute_attention_pairs) += pairs;
    if (n.op == OpKind::AttentionGrad) {
      c.backward_attention_pairs += pairs;
      if (n.int_attr("recompute") != 0) c.rescored_attention_pairs += pairs;
    }
    switch (n.phase) {
      case ir::Phase::Forward:
        c.forward_flops += flops;
        c.forward_elementwise += elementwise_moved;
        c.forward_whole_rows += whole_moved;
        c.forward_moved += moved_elements(g, n, seq);
        c.forward_ops += n.op == OpKind::Param || n.op == OpKind::Input ? 0 : 1;
        if (n.op == OpKind::Param) c.parameters += static_cast<double>(n.type.shape.elements());
        if (read_by_backward[id] && n.op != OpKind::Param && n.op != OpKind::Input &&
            n.type.shape.dims[0] == ir::kSeq) {
          c.saved_elements += static_cast<double>(n.type.shape.elements(seq));
          if (whole) c.saved_whole_rows += static_cast<double>(n.type.shape.elements(seq));
        }
        break;
      case ir::Phase::Recompute:
        c.recompute_flops += flops;
        c.backward_elementwise += elementwise_moved;
        c.backward_whole_rows += whole_moved;
        c.backward_moved += moved_elements(g, n, seq);
        ++c.backward_ops;
        break;
      case ir::Phase::Backward:
        c.backward_flops += flops;
        c.backward_elementwise += elementwise_moved;
        c.backward_whole_rows += whole_moved;
        c.backward_moved += moved_elements(g, n, seq);
        ++c.backward_ops;
        if (n.op == OpKind::AttentionGrad && n.int_attr("recompute") == 0)  // softmax probabilities kept
          c.saved_elements += static_cast<double>(n.int_attr("n_heads")) * attention_pairs(n, static_cast<double>(seq));
        break;
      case ir::Phase::Optimizer:
        break;
    }
  }
  for (int64_t l = 0; l < layers; ++l) {
    // A layer's output: its last residual Add.
    for (const auto& n : g.nodes())
      if (n.layer == l && n.phase == ir::Phase::Forward && n.op == OpKind::Add)
        cost.layers[static_cast<size_t>(l)].boundary_elements = static_cast<double>(n.type.shape.elements(seq));
  }
  const double params = cost.total().parameters;
  cost.optimizer_flops = t.options.optimizer.kind == ir::OptimizerKind::AdamW ? 12 * params : 5 * params;
  return cost;
}

}  // namespace tessera::compiler
