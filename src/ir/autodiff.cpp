#include "tessera/ir/autodiff.hpp"

#include <algorithm>

namespace tessera::ir {

Recompute parse_recompute(const std::string& name) {
  if (name == "none") return Recompute::None;
  if (name == "selective") return Recompute::Selective;
  if (name == "full") return Recompute::Full;
  fail("unknown recompute mode '{}': expected none, selective or full", name);
}

const char* recompute_name(Recompute recompute) {
  switch (recompute) {
    case Recompute::None:
      return "none";
    case Recompute::Selective:
      return "selective";
    case Recompute::Full:
      return "full";
  }
  return "?";
}

namespace {

// Generates the backward pass of the forward nodes [0, forward_size) of `g` in reverse order.
class Differentiator {
 public:
  Differentiator(TrainingGraph& out, size_t forward_size)
      : t_(out), g_(out.graph), forward_size_(forward_size), contributions_(forward_size), slices_(forward_size) {
    needs_grad_.assign(forward_size, false);
    for (size_t id = 0; id < forward_size; ++id) {
      const Node& n = g_.node(static_cast<int>(id));
      needs_grad_[id] = n.op == OpKind::Param;
      for (int in : n.inputs) needs_grad_[id] = needs_grad_[id] || needs_grad_[static_cast<size_t>(in)];
    }
  }

  void seed(int node, int gradient) { contributions_[static_cast<size_t>(node)].push_back(gradient); }

  void run() {
    g_.set_phase(Phase::Backward);
    for (size_t i = forward_size_; i-- > 0;) backward(static_cast<int>(i));
  }

 private:
  struct Slice {
    int64_t start, size;
    int gradient;
  };

  void backward(int id) {
    const Node node = g_.node(id);  // a copy: adding nodes may reallocate the node list
    const auto i = static_cast<size_t>(id);
    if (!needs_grad_[i] || node.op == OpKind::Input) return;
    gather_slices(id, node);
    auto& parts = contributions_[i];
    if (parts.empty()) return;
    g_.set_layer(node.layer);
    if (node.layer >= 0) recompute_layer(node.layer);
    int dy = parts[0];
    for (size_t p = 1; p < parts.size(); ++p)
      dy = g_.add(OpKind::Add, {dy, parts[p]}, {}, node.name.empty() ? std::string() : node.name + ".grad_sum");
    auto in = [&](size_t k) { return node.inputs[k]; };
    auto wants = [&](size_t k) { return needs_grad_[static_cast<size_t>(node.inputs[k])]; };
    auto name = [&](const char* suffix) { return node.name.empty() ? std::string() : node.name + suffix; };
    switch (node.op) {
      case OpKind::Input:
        return;
      case OpKind::Param:
        t_.gradients[node.name] = dy;
        return;
      case OpKind::Embedding: {
        const int64_t rows = g_.node(in(0)).type.shape.dims[0];
        contribute(in(0), g_.add(OpKind::EmbeddingGrad, {dy, in(1)}, {{"rows", rows}}, name(".d_table")));
        return;
      }
      case OpKind::Add:
        contribute(in(0), dy);
        contribute(in(1), dy);
        return;
      case OpKind::Mul:
        if (wants(0)) contribute(in(0), g_.add(OpKind::Mul, {dy, saved(in(1))}, {}, name(".d_a")));
        if (wants(1)) contribute(in(1), g_.add(OpKind::Mul, {dy, saved(in(0))}, {}, name(".d_b")));
        return;
      case OpKind::LayerNorm:
      case OpKind::RmsNorm: {
        const bool centered = node.op == OpKind::LayerNorm;
        const Attrs eps{{"eps", node.attrs.at("eps")}};
        const int x = saved(in(0));
        if (wants(0))
          contribute(in(0),
                     g_.add(centered ? OpKind::LayerNormGrad : OpKind::RmsNormGrad, {x, in(1), dy}, eps, name(".dx")));
        Attrs scale_attrs = eps;
        scale_attrs["centered"] = int64_t{centered ? 1 : 0};
        if (wants(1)) contribute(in(1), g_.add(OpKind::NormScaleGrad, {x, dy}, scale_attrs, name(".d_scale")));
        if (centered && wants(2)) contribute(in(2), g_.add(OpKind::SumRows, {dy}, {}, name(".d_shift")));
        return;
      }
      case OpKind::MatMul:
      case OpKind::Linear: {
        // MatMul: y = x W (W [K,N]) -> dx = dy W^T (a Linear of dy by W), dW = x^T dy.
        // Linear: y = x W^T (W [N,K]) -> dx = dy W (a MatMul of dy by W), dW = dy^T x.
        const bool matmul = node.op == OpKind::MatMul;
        const int x = saved(in(0));
        if (wants(0)) contribute(in(0), g_.add(matmul ? OpKind::Linear : OpKind::MatMul, {dy, in(1)}, {}, name(".dx")));
        if (wants(1))
          contribute(in(1), g_.add(OpKind::WeightGrad, matmul ? std::vector<int>{x, dy} : std::vector<int>{dy, x}, {},
                                   name(".d_weight")));
        if (node.inputs.size() == 3 && wants(2)) contribute(in(2), g_.add(OpKind::SumRows, {dy}, {}, name(".d_bias")));
        return;
      }
      case OpKind::Gelu:
      case OpKind::Silu:
        contribute(in(0), g_.add(node.op == OpKind::Gelu ? OpKind::GeluGrad : OpKind::SiluGrad, {saved(in(0)), dy},
                                 node.attrs, name(".dx")));
        return;
      case OpKind::SliceCols:
        slices_[static_cast<size_t>(in(0))].push_back({node.int_attr("start"), node.int_attr("size"), dy});
        return;
      case OpKind::Rope:
        contribute(in(0), g_.add(OpKind::RopeGrad, {dy, in(1)}, node.attrs, name(".dx")));
        return;
      case OpKind::Attention: {
        Attrs attrs = node.attrs;
        attrs["recompute"] = int64_t{t_.options.recompute == Recompute::None ? 0 : 1};
        const int grads = g_.add(OpKind::AttentionGrad, {saved(in(0)), saved(in(1)), saved(in(2)), saved(id), dy},
                                 attrs, name(".grad"));
        const int64_t hd = node.int_attr("head_dim"), q = node.int_attr("n_heads") * hd,
                      kv = node.int_attr("n_kv_heads") * hd;
        const int64_t starts[] = {0, q, q + kv}, sizes[] = {q, kv, kv};
        const char* names[] = {".dq", ".dk", ".dv"};
        for (size_t k = 0; k < 3; ++k)
          if (wants(k))
            contribute(in(k),
                       g_.add(OpKind::SliceCols, {grads}, {{"start", starts[k]}, {"size", sizes[k]}}, name(names[k])));
        return;
      }
      case OpKind::MoeExperts:
        fail("training '{}': mixture-of-experts layers have no gradient in tessera yet (inference only)", node.name);
      default:
        fail("autodiff: cannot differentiate {} '{}'", op_info(node.op).name, node.name);
    }
  }

  void contribute(int node, int gradient) {
    if (needs_grad_[static_cast<size_t>(node)]) contributions_[static_cast<size_t>(node)].push_back(gradient);
  }

  // The gradients of a node's column slices, once all are known, become one contribution: their
  // concatenation (the slices must tile the columns, as a fused projection's parts do).
  void gather_slices(int id, const Node& node) {
    auto& slices = slices_[static_cast<size_t>(id)];
    if (slices.empty()) return;
    std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.start < b.start; });
    std::vector<int> parts;
    int64_t next = 0;
    for (const Slice& s : slices) {
      if (s.start != next)
        fail("autodiff: the column slices of '{}' do not tile its {} columns (a slice starts at {}, expected {})",
             node.name, node.type.shape.dims.back(), s.start, next);
      parts.push_back(s.gradient), next += s.size;
    }
    if (next != node.type.shape.dims.back())
      fail("autodiff: the column slices of '{}' cover {} of its {} columns", node.name, next,
           node.type.shape.dims.back());
    g_.set_layer(node.layer);
    contributions_[static_cast<size_t>(id)].push_back(
        parts.size() == 1 ? parts[0]
                          : g_.add(OpKind::ConcatCols, parts, {}, node.name.empty() ? "" : node.name + ".grad"));
  }

  // Full recompute: before a layer's first backward op, its forward ops run again from the
  // layer's input; the backward ops then read the recomputed activations.
  void recompute_layer(int64_t layer) {
    if (t_.options.recompute != Recompute::Full || recomputed_layers_.contains(layer)) return;
    recomputed_layers_.insert({layer, true});
    g_.set_phase(Phase::Recompute);
    for (size_t id = 0; id < forward_size_; ++id) {
      const Node& n = g_.node(static_cast<int>(id));
      if (n.layer != layer || n.op == OpKind::Param || n.op == OpKind::Input) continue;
      std::vector<int> inputs = n.inputs;
      for (int& in : inputs) in = saved(in);
      const Node copy = n;
      recomputed_[static_cast<int>(id)] = g_.add(copy.op, inputs, copy.attrs, copy.name);
    }
    g_.set_phase(Phase::Backward);
  }

  int saved(int id) const {
    const auto it = recomputed_.find(id);
    return it == recomputed_.end() ? id : it->second;
  }

  TrainingGraph& t_;
  Graph& g_;
  size_t forward_size_;
  std::vector<bool> needs_grad_;
  std::vector<std::vector<int>> contributions_;
  std::vector<std::vector<Slice>> slices_;
  std::map<int, int> recomputed_;
  std::map<int64_t, bool> recomputed_layers_;
};

}  // namespace

TrainingGraph build_training_graph(const Graph& forward, const TrainingOptions& options) {
  if (const Status s = forward.verify(); !s) fail("cannot differentiate an invalid graph: {}", s.message());
  if (forward.outputs().size() != 1) fail("autodiff needs a graph with one output (the logits)");
  for (const Node& n : forward.nodes())
    if (op_info(n.op).training) fail("autodiff: '{}' is already a training op", n.name);
  const OptimizerOptions& opt = options.optimizer;
  if (opt.clip_norm < 0 || opt.weight_decay < 0 || opt.beta1 < 0 || opt.beta1 >= 1 || opt.beta2 < 0 || opt.beta2 >= 1 ||
      opt.eps <= 0 || opt.momentum < 0 || opt.momentum >= 1)
    fail("optimizer settings out of range: betas and momentum in [0,1), eps > 0, weight decay and clip norm >= 0");

  TrainingGraph t{forward, options};
  Graph& g = t.graph;
  const size_t forward_size = g.nodes().size();
  t.logits = forward.outputs()[0];
  const int targets = g.add_input("targets", DType::I32, Shape{{kSeq}});
  const int loss_scale = g.add_input("loss_scale", DType::F32, Shape{{1}});
  const int lr = g.add_input("learning_rate", DType::F32, Shape{{1}});
  const int step = g.add_input("step", DType::I32, Shape{{1}});
  t.loss = g.add(OpKind::CrossEntropy, {t.logits, targets}, {}, "loss");
  g.mark_output(t.loss);

  Differentiator diff(t, forward_size);
  g.set_phase(Phase::Backward);
  diff.seed(t.logits, g.add(OpKind::CrossEntropyGrad, {t.logits, targets, loss_scale}, {}, "loss.grad"));
  diff.run();

  g.set_phase(Phase::Optimizer);
  g.set_layer(-1);
  t.optimizer_begin = static_cast<int>(g.nodes().size());
  std::vector<int> grads;
  for (size_t id = 0; id < forward_size; ++id) {
    const Node& n = g.node(static_cast<int>(id));
    if (n.op != OpKind::Param) continue;
    if (!t.gradients.contains(n.name)) fail("autodiff: parameter '{}' does not reach the logits", n.name);
    t.parameters.push_back(n.name);
    grads.push_back(t.gradients.at(n.name));
  }
  const int clip = opt.clip_norm > 0 ? g.add(OpKind::GradNormScale, grads, {{"max_norm", opt.clip_norm}}, "clip") : -1;
  for (size_t p = 0; p < t.parameters.size(); ++p) {
    const std::string& name = t.parameters[p];
    const int param = forward.find_param(name);
    g.set_layer(g.node(param).layer);
    const double decay = g.node(param).type.shape.rank() >= 2 ? opt.weight_decay : 0.0;
    std::vector<int> inputs = {param, grads[p], lr};
    if (opt.kind == OptimizerKind::AdamW) {
      inputs.push_back(step);
      if (clip >= 0) inputs.push_back(clip);
      t.updates[name] = g.add(OpKind::AdamW, inputs,
                              {{"beta1", opt.beta1}, {"beta2", opt.beta2}, {"eps", opt.eps}, {"weight_decay", decay}},
                              name + ".update");
    } else {
      if (clip >= 0) inputs.push_back(clip);
      t.updates[name] =
          g.add(OpKind::SgdMomentum, inputs, {{"momentum", opt.momentum}, {"weight_decay", decay}}, name + ".update");
    }
  }
  g.set_phase(Phase::Forward);
  if (const Status s = g.verify(); !s) fail("autodiff produced an invalid graph: {}", s.message());
  return t;
}

}  // namespace tessera::ir
