#include "tessera/ir/graph.hpp"

#include <fmt/core.h>

namespace tessera::ir {

const char* dtype_name(DType dtype) { return dtype == DType::F32 ? "f32" : "i32"; }

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::Forward:
      return "forward";
    case Phase::Recompute:
      return "recompute";
    case Phase::Backward:
      return "backward";
    case Phase::Optimizer:
      return "optimizer";
  }
  return "?";
}

int64_t Shape::elements(int64_t seq) const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d == kSeq ? seq : d;
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += dims[i] == kSeq ? std::string("seq") : std::to_string(dims[i]);
  }
  return s + "]";
}

int64_t Node::int_attr(const std::string& key) const {
  const auto it = attrs.find(key);
  TESSERA_ASSERT(it != attrs.end() && std::holds_alternative<int64_t>(it->second));
  return std::get<int64_t>(it->second);
}

double Node::float_attr(const std::string& key) const {
  const auto it = attrs.find(key);
  TESSERA_ASSERT(it != attrs.end());
  if (const auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return std::get<double>(it->second);
}

int Graph::add_input(const std::string& name, DType dtype, Shape shape) {
  nodes_.push_back(Node{OpKind::Input, name, {}, {}, TensorType{dtype, std::move(shape)}, layer_, phase_});
  return static_cast<int>(nodes_.size()) - 1;
}

int Graph::add_param(const std::string& name, Shape shape) {
  nodes_.push_back(Node{OpKind::Param, name, {}, {}, TensorType{DType::F32, std::move(shape)}, layer_, phase_});
  return static_cast<int>(nodes_.size()) - 1;
}

int Graph::add(OpKind op, std::vector<int> inputs, Attrs attrs, std::string name) {
  Node node{op, std::move(name), std::move(inputs), std::move(attrs), {}, layer_, phase_};
  for (int id : node.inputs)
    if (id < 0 || id >= static_cast<int>(nodes_.size()))
      fail("{} '{}': input %{} does not exist yet", op_info(op).name, node.name, id);
  if (const Status s = infer_type(*this, node); !s) fail("invalid graph: {}", s.message());
  nodes_.push_back(std::move(node));
  return static_cast<int>(nodes_.size()) - 1;
}

void Graph::mark_output(int node) {
  TESSERA_ASSERT(node >= 0 && node < static_cast<int>(nodes_.size()));
  outputs_.push_back(node);
}

int Graph::find_input(const std::string& name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].op == OpKind::Input && nodes_[i].name == name) return static_cast<int>(i);
  return -1;
}

int Graph::find_param(const std::string& name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].op == OpKind::Param && nodes_[i].name == name) return static_cast<int>(i);
  return -1;
}

Status Graph::verify() const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node copy = nodes_[i];
    for (int id : copy.inputs)
      if (id < 0 || static_cast<size_t>(id) >= i)
        return Status::failure("node %{} ({}) uses %{}, which does not precede it", i, op_info(copy.op).name, id);
    if (copy.op == OpKind::Param || copy.op == OpKind::Input) {
      for (int64_t d : copy.type.shape.dims)
        if (d <= 0 && !(copy.op == OpKind::Input && d == kSeq))
          return Status::failure("node %{} '{}': bad dimension in {}", i, copy.name, copy.type.shape.str());
      continue;
    }
    if (const Status s = infer_type(*this, copy); !s) return Status::failure("node %{}: {}", i, s.message());
    if (!(copy.type.shape == nodes_[i].type.shape) || copy.type.dtype != nodes_[i].type.dtype)
      return Status::failure("node %{}: recorded type differs from the inferred one", i);
  }
  if (outputs_.empty()) return Status::failure("graph has no outputs");
  return Status::ok();
}

int64_t Graph::parameter_count() const {
  int64_t n = 0;
  for (const auto& node : nodes_)
    if (node.op == OpKind::Param) n += node.type.shape.elements();
  return n;
}

int64_t Graph::active_parameter_count() const {
  int64_t n = parameter_count();
  for (const auto& node : nodes_) {
    if (node.op != OpKind::MoeExperts) continue;
    const int64_t experts = node.int_attr("n_experts"), idle = experts - node.int_attr("top_k");
    int64_t expert_weights = 0;
    for (size_t i = 2; i < node.inputs.size(); ++i)
      expert_weights += nodes_[static_cast<size_t>(node.inputs[i])].type.shape.elements();
    n -= expert_weights / experts * idle;
  }
  return n;
}

std::string Graph::dump() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (i > 0 && n.phase != nodes_[i - 1].phase) out += fmt::format("# {}\n", phase_name(n.phase));
    std::string line = fmt::format("%{} = {}", i, op_info(n.op).name);
    if (n.op == OpKind::Input || n.op == OpKind::Param) {
      line += " \"" + n.name + "\"";
    } else {
      line += "(";
      for (size_t j = 0; j < n.inputs.size(); ++j) line += fmt::format("{}%{}", j ? ", " : "", n.inputs[j]);
      line += ")";
      if (!n.attrs.empty()) {
        line += " {";
        bool first = true;
        for (const auto& [key, value] : n.attrs) {
          line += (first ? "" : ", ") + key + "=";
          line += std::visit([](auto v) { return fmt::format("{}", v); }, value);
          first = false;
        }
        line += "}";
      }
      if (!n.name.empty()) line += "  # " + n.name;
    }
    out += fmt::format("{:<60} : {}{}\n", line, dtype_name(n.type.dtype), n.type.shape.str());
  }
  for (int id : outputs_) out += fmt::format("output %{}\n", id);
  return out;
}

}  // namespace tessera::ir
