#include "tessera/compiler/lowering.hpp"

#include <algorithm>
#include <map>

#include <fmt/core.h>

#include "tessera/base/error.hpp"

namespace tessera::compiler {

const char* lowered_kind_name(LoweredKind kind) {
  switch (kind) {
    case LoweredKind::Embedding:
      return "embedding";
    case LoweredKind::Norm:
      return "norm";
    case LoweredKind::Projection:
      return "projection";
    case LoweredKind::Rope:
      return "rope";
    case LoweredKind::Attention:
      return "attention";
    case LoweredKind::Activation:
      return "activation";
    case LoweredKind::Add:
      return "add";
    case LoweredKind::Mul:
      return "mul";
    case LoweredKind::Experts:
      return "experts";
  }
  return "?";
}

namespace {

size_t common_prefix(const std::vector<std::string>& names) {
  size_t n = names.front().size();
  for (const auto& s : names) {
    size_t i = 0;
    while (i < n && i < s.size() && s[i] == names.front()[i]) ++i;
    n = i;
  }
  return n;
}

// "a.q_proj", "a.k_proj", "a.v_proj" -> "a.qkv_proj"; "m.gate_proj", "m.up_proj" -> "m.gate_up_proj":
// the common prefix and suffix around the differing stems, single letters run together.
std::string fused_projection_name(const std::vector<std::string>& names) {
  if (names.size() == 1) return names.front();
  const size_t pre = common_prefix(names);
  std::vector<std::string> rest;
  size_t shortest = std::string::npos;
  for (const auto& s : names) rest.push_back(s.substr(pre)), shortest = std::min(shortest, rest.back().size());
  size_t suf = 0;
  while (suf + 1 < shortest && std::all_of(rest.begin(), rest.end(), [&](const std::string& r) {
           return r[r.size() - 1 - suf] == rest.front()[rest.front().size() - 1 - suf];
         }))
    ++suf;
  const bool letters = std::all_of(rest.begin(), rest.end(), [&](const std::string& r) { return r.size() - suf == 1; });
  std::string stems;
  for (const auto& r : rest) {
    if (!stems.empty() && !letters) stems += '_';
    stems.append(r, 0, r.size() - suf);
  }
  return names.front().substr(0, pre) + stems + rest.front().substr(rest.front().size() - suf);
}

// "l.rope_q", "l.rope_k" -> "l.rope": what the names share, without a trailing separator.
std::string fused_elementwise_name(const std::vector<std::string>& names) {
  if (names.size() == 1) return names.front();
  std::string s = names.front().substr(0, common_prefix(names));
  while (!s.empty() && (s.back() == '_' || s.back() == '.')) s.pop_back();
  return s;
}

class Driver {
 public:
  explicit Driver(const ir::Graph& g) : g_(g), consumers_(g.nodes().size()), done_(g.nodes().size()) {
    for (size_t i = 0; i < g.nodes().size(); ++i)
      for (int in : g.nodes()[i].inputs) consumers_[static_cast<size_t>(in)].push_back(static_cast<int>(i));
    split_.assign(g.nodes().size(), false);
  }

  LoweredModel run() {
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& node = g_.nodes()[i];
      if (node.layer >= 0) enter_layer(node);
      if (done_[i] || node.op == ir::OpKind::Input || node.op == ir::OpKind::Param) continue;
      lower(static_cast<int>(i));
    }
    for (auto* ops : {&out_.embedding, &out_.head}) mark_split(*ops);
    for (auto& layer : out_.layers) mark_split(layer.ops);
    name_layers();
    collect_parameters();
    return std::move(out_);
  }

 private:
  void mark_split(std::vector<LoweredOp>& ops) const {
    for (auto& op : ops) op.split_output = split_[static_cast<size_t>(op.nodes.back())];
  }

  // Each layer's prefix (what all its node names start with, up to a '.') and each op's name
  // within its layer.
  void name_layers() {
    for (auto& layer : out_.layers) {
      std::vector<std::string> names;
      for (const auto& op : layer.ops)
        for (int id : op.nodes)
          if (!g_.node(id).name.empty()) names.push_back(g_.node(id).name);
      if (!names.empty()) {
        const std::string shared = names.front().substr(0, common_prefix(names));
        layer.prefix = shared.substr(0, shared.rfind('.') + 1);
      }
      for (auto& op : layer.ops)
        op.local = op.name.starts_with(layer.prefix) ? op.name.substr(layer.prefix.size()) : op.name;
    }
    for (auto* ops : {&out_.embedding, &out_.head})
      for (auto& op : *ops) op.local = op.name;
  }

  // Every parameter with where its first user is, its k (a projection's, or an embedding table's
  // row width) and whether the tokens index it.
  void collect_parameters() {
    std::map<std::string, int64_t> projection_k;
    for (const auto* op : out_.ops())
      if (op->kind == LoweredKind::Projection)
        for (const auto& w : op->weights) projection_k[w] = op->k;
    std::map<int, Parameter::Place> place;
    auto note_users = [&](const std::vector<LoweredOp>& ops, Parameter::Place where) {
      for (const auto& op : ops)
        for (int id : op.nodes)
          for (int in : g_.node(id).inputs) place.try_emplace(in, where);
    };
    note_users(out_.embedding, Parameter::Place::Embedding);
    for (const auto& layer : out_.layers) note_users(layer.ops, Parameter::Place::Layer);
    note_users(out_.head, Parameter::Place::Head);
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& node = g_.nodes()[i];
      if (node.op != ir::OpKind::Param) continue;
      Parameter p{node.name, node.type.shape.elements(), 0, Parameter::Place::Layer, node.layer, false};
      if (const auto it = place.find(static_cast<int>(i)); it != place.end()) p.place = it->second;
      if (const auto it = projection_k.find(node.name); it != projection_k.end())
        p.k = it->second;
      else if (node.type.shape.rank() == 2)
        p.k = node.type.shape.dims[1];
      for (int user : consumers_[i]) {
        const ir::Node& u = g_.node(user);
        if (u.op == ir::OpKind::Embedding && u.inputs[0] == static_cast<int>(i) &&
            g_.node(u.inputs[1]).op == ir::OpKind::Input && g_.node(u.inputs[1]).name == "tokens")
          p.token_table = true;
      }
      out_.parameters.push_back(p);
    }
  }

  void enter_layer(const ir::Node& node) {
    const auto index = static_cast<size_t>(node.layer);
    if (index + 1 == out_.layers.size()) return;
    if (index != out_.layers.size() || after_layers_)
      fail("graph node '{}' is in layer {}, but {} layers came before it{}", node.name, node.layer, out_.layers.size(),
           after_layers_ ? " and the head already began" : "");
    out_.layers.emplace_back();
  }

  std::vector<LoweredOp>& bucket(const ir::Node& node) {
    if (node.layer >= 0) return out_.layers.back().ops;
    if (!out_.layers.empty()) after_layers_ = true;
    return out_.layers.empty() ? out_.embedding : out_.head;
  }

  // `first` and the later nodes with its op, layer, arity and input `input`, not yet lowered.
  std::vector<int> siblings(int first, size_t input) const {
    const ir::Node& a = g_.node(first);
    std::vector<int> out{first};
    for (int c : consumers_[static_cast<size_t>(a.inputs[input])]) {
      const ir::Node& b = g_.node(c);
      if (c > first && !done_[static_cast<size_t>(c)] && b.op == a.op && b.layer == a.layer &&
          b.inputs.size() == a.inputs.size() && b.inputs[input] == a.inputs[input])
        out.push_back(c);
    }
    return out;
  }

  LoweredOp op_for(LoweredKind kind, int id) const {
    const ir::Node& node = g_.node(id);
    LoweredOp op;
    op.kind = kind, op.name = name_of(id), op.op = node.op, op.nodes = {id};
    op.width = node.type.shape.dims.back();
    return op;
  }

  void lower(int id) {
    const ir::Node& node = g_.node(id);
    auto& ops = bucket(node);
    const auto i = static_cast<size_t>(id);
    done_[i] = true;
    const bool split_in = !node.inputs.empty() && split_[static_cast<size_t>(node.inputs[0])];
    if (ir::op_info(node.op).training)
      fail("lowering for inference: '{}' is a training op ({}); inference graphs hold forward ops only", node.name,
           ir::op_info(node.op).name);
    switch (node.op) {
      case ir::OpKind::Input:
      case ir::OpKind::Param:
        return;
      case ir::OpKind::Embedding:
        if (&ops == &out_.embedding && !ops.empty() && ops.back().kind == LoweredKind::Embedding) {
          ops.back().tables++, ops.back().nodes.push_back(id);
        } else {
          ops.push_back(op_for(LoweredKind::Embedding, id));
          ops.back().name = node.name.empty() ? "embedding" : node.name, ops.back().tables = 1;
        }
        return;
      case ir::OpKind::Add: {
        // Lookups, or their sum so far (BERT adds a third table to the first two's sum).
        const bool sums_tables = !ops.empty() && ops.back().kind == LoweredKind::Embedding &&
                                 std::all_of(node.inputs.begin(), node.inputs.end(), [&](int in) {
                                   const auto& summed = ops.back().nodes;
                                   return g_.node(in).op == ir::OpKind::Embedding ||
                                          std::find(summed.begin(), summed.end(), in) != summed.end();
                                 });
        if (sums_tables) {
          ops.back().nodes.push_back(id);
        } else {
          ops.push_back(op_for(LoweredKind::Add, id));
        }
        split_[i] = split_in;
        return;
      }
      case ir::OpKind::Mul:
        ops.push_back(op_for(LoweredKind::Mul, id));
        split_[i] = split_in;
        return;
      case ir::OpKind::LayerNorm:
      case ir::OpKind::RmsNorm:
        ops.push_back(op_for(LoweredKind::Norm, id));
        ops.back().vectors = static_cast<int64_t>(node.inputs.size()) - 1;
        // A norm of a split tensor (BERT's head: dense, GELU, LayerNorm) stays split: its
        // statistics are reduced over the split.
        ops.back().split_input = split_in;
        split_[i] = split_in;
        return;
      case ir::OpKind::Gelu:
        ops.push_back(op_for(LoweredKind::Activation, id));
        split_[i] = split_in;
        return;
      case ir::OpKind::Silu: {
        ops.push_back(op_for(LoweredKind::Activation, id));
        split_[i] = split_in;
        if (consumers_[i].size() == 1 && g_.node(consumers_[i][0]).op == ir::OpKind::Mul) {
          const int mul = consumers_[i][0];
          done_[static_cast<size_t>(mul)] = true, split_[static_cast<size_t>(mul)] = split_in;
          ops.back().gated = true, ops.back().name = g_.node(mul).name, ops.back().nodes.push_back(mul);
        }
        return;
      }
      case ir::OpKind::SliceCols:
        split_[i] = split_in;  // a view of its input (a fused projection's part)
        return;
      case ir::OpKind::Rope: {
        const auto group = siblings(id, 1);
        LoweredOp op = op_for(LoweredKind::Rope, id);
        std::vector<std::string> names;
        op.width = 0, op.nodes = group;
        for (int n : group) {
          const ir::Node& r = g_.node(n);
          done_[static_cast<size_t>(n)] = true,
          split_[static_cast<size_t>(n)] = split_[static_cast<size_t>(r.inputs[0])];
          op.width += r.type.shape.dims.back(), op.heads += r.int_attr("n_heads"), names.push_back(name_of(n));
        }
        op.head_dim = node.int_attr("head_dim");
        op.name = fused_elementwise_name(names);
        ops.push_back(op);
        return;
      }
      case ir::OpKind::Attention: {
        LoweredOp op = op_for(LoweredKind::Attention, id);
        op.heads = node.int_attr("n_heads"), op.kv_heads = node.int_attr("n_kv_heads");
        op.head_dim = node.int_attr("head_dim");
        op.causal = ir::is_causal(node);
        if (!op.causal) out_.encoder = true;
        ops.push_back(op);
        split_[i] = split_in;
        return;
      }
      case ir::OpKind::MatMul:
      case ir::OpKind::Linear: {
        // Same input, same op and bias: k is the same, so the weights concatenate.
        const auto group = siblings(id, 0);
        LoweredOp op = op_for(LoweredKind::Projection, id);
        std::vector<std::string> names;
        op.k = k_of(node), op.n = 0, op.bias = node.inputs.size() == 3, op.linear = node.op == ir::OpKind::Linear;
        op.split_input = split_in, op.nodes = group;
        for (int n : group) {
          const ir::Node& m = g_.node(n);
          done_[static_cast<size_t>(n)] = true, split_[static_cast<size_t>(n)] = !split_in;
          const int64_t width = m.type.shape.dims.back();
          op.n += width, op.part_widths.push_back(width), op.weights.push_back(g_.node(m.inputs[1]).name);
          names.push_back(name_of(n));
        }
        op.width = op.n;
        op.name = fused_projection_name(names);
        if (group.size() == 1) op.part_widths = slices_of(id);
        for (int value : part_values(op)) op.part_roles.push_back(role_of(value, op.attention_group));
        if (const ir::Node& in = g_.node(node.inputs[0]); in.op == ir::OpKind::Attention)
          op.input_group = in.int_attr("n_heads") / in.int_attr("n_kv_heads");
        ops.push_back(op);
        return;
      }
      case ir::OpKind::MoeExperts: {
        // Inputs: x, the router's logits, then w1, w3, w2 ([d_ff, d], [d_ff, d], [d, d_ff]) per expert.
        LoweredOp op = op_for(LoweredKind::Experts, id);
        op.experts = node.int_attr("n_experts"), op.top_k = node.int_attr("top_k");
        op.k = op.width, op.n = g_.node(node.inputs[2]).type.shape.dims[0];
        for (size_t w = 2; w < node.inputs.size(); ++w) op.weights.push_back(g_.node(node.inputs[w]).name);
        op.split_input = split_in;
        ops.push_back(op);
        split_[i] = false;  // each token's experts' outputs are summed back into a whole tensor
        return;
      }
      default:
        TESSERA_ASSERT(false);
    }
  }

  // A node's name; an unnamed one is called after its op and id ("gelu%12").
  std::string name_of(int id) const {
    const ir::Node& node = g_.node(id);
    return node.name.empty() ? fmt::format("{}%{}", ir::op_info(node.op).name, id) : node.name;
  }

  // The graph value each part of a projection is: its fused nodes, or the slices of a lone node.
  std::vector<int> part_values(const LoweredOp& op) const {
    if (op.nodes.size() > 1 || op.part_widths.size() == 1) return op.nodes;
    std::vector<std::pair<int64_t, int>> by_start;
    for (int u : consumers_[static_cast<size_t>(op.nodes.front())])
      by_start.emplace_back(g_.node(u).int_attr("start"), u);
    std::sort(by_start.begin(), by_start.end());
    std::vector<int> out;
    for (const auto& [start, node] : by_start) out.push_back(node);
    return out;
  }

  // Whether `value` (through RoPE) is an attention's queries or its keys or values; sets `group`
  // to that attention's query heads per KV head.
  PartRole role_of(int value, int64_t& group) const {
    for (int u : consumers_[static_cast<size_t>(value)]) {
      const ir::Node& user = g_.node(u);
      if (user.op == ir::OpKind::Rope) return role_of(u, group);
      if (user.op != ir::OpKind::Attention) continue;
      group = user.int_attr("n_heads") / user.int_attr("n_kv_heads");
      return user.inputs[0] == value ? PartRole::Query : PartRole::KeyValue;
    }
    return PartRole::Other;
  }

  int64_t k_of(const ir::Node& mm) const {
    const auto& w = g_.node(mm.inputs[1]).type.shape.dims;
    return mm.op == ir::OpKind::Linear ? w[1] : w[0];
  }

  // A projection read only through equal-width slices that tile it has those slices as parts.
  std::vector<int64_t> slices_of(int id) const {
    const auto& users = consumers_[static_cast<size_t>(id)];
    const int64_t n = g_.node(id).type.shape.dims.back();
    std::vector<std::pair<int64_t, int64_t>> slices;
    for (int u : users) {
      const ir::Node& s = g_.node(u);
      if (s.op != ir::OpKind::SliceCols) return {n};
      slices.emplace_back(s.int_attr("start"), s.int_attr("size"));
    }
    std::sort(slices.begin(), slices.end());
    int64_t next = 0;
    for (const auto& [start, size] : slices) {
      if (start != next) return {n};
      next += size;
    }
    if (next != n || slices.empty()) return {n};
    std::vector<int64_t> widths;
    for (const auto& s : slices) widths.push_back(s.second);
    return widths;
  }

  const ir::Graph& g_;
  std::vector<std::vector<int>> consumers_;
  std::vector<bool> done_, split_;
  bool after_layers_ = false;
  LoweredModel out_;
};

}  // namespace

std::vector<const LoweredOp*> LoweredModel::ops() const {
  std::vector<const LoweredOp*> out;
  for (const auto& op : embedding) out.push_back(&op);
  for (const auto& layer : layers)
    for (const auto& op : layer.ops) out.push_back(&op);
  for (const auto& op : head) out.push_back(&op);
  return out;
}

const LoweredOp* LoweredModel::projection(const std::string& name) const {
  for (const auto* op : ops())
    if (op->kind == LoweredKind::Projection && op->name == name) return op;
  return nullptr;
}

const LoweredOp& LoweredModel::lm_head() const {
  for (auto it = head.rbegin(); it != head.rend(); ++it)
    if (it->kind == LoweredKind::Projection) return *it;
  fail("the model graph ends in no projection (an LM head)");
}

LoweredModel lower_graph(const ir::Graph& graph) { return Driver(graph).run(); }

}  // namespace tessera::compiler
