#include "tessera/onnx/onnx_import.hpp"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <fmt/core.h>
#include <fmt/ranges.h>

#include "tessera/base/error.hpp"
#include "tessera/base/half.hpp"

namespace tessera::onnx_import {

namespace {

// The ops a raised GPT-2 export may contain: the data path's, and the shape arithmetic torch.onnx
// emits around views and masks (on the sequence length, never on activations).
const std::set<std::string>& known_ops() {
  static const std::set<std::string> ops = {"Add",
                                            "Cast",
                                            "Concat",
                                            "Constant",
                                            "ConstantOfShape",
                                            "Div",
                                            "Equal",
                                            "Expand",
                                            "Gather",
                                            "Identity",
                                            "LayerNormalization",
                                            "MatMul",
                                            "Mul",
                                            "Not",
                                            "Pow",
                                            "Range",
                                            "Reshape",
                                            "Shape",
                                            "Slice",
                                            "Softmax",
                                            "Split",
                                            "Sqrt",
                                            "Squeeze",
                                            "Sub",
                                            "Tanh",
                                            "Transpose",
                                            "Unsqueeze",
                                            "Where"};
  return ops;
}

std::string describe(const onnx::NodeProto& n) {
  return fmt::format("node '{}' ({})", n.name().empty() && n.output_size() > 0 ? n.output(0) : n.name(), n.op_type());
}

struct Array {
  std::vector<int64_t> dims;
  std::vector<double> values;  // whatever the element type
};

// The inputs a node of each op the raising reads must have (ONNX's required inputs).
size_t required_inputs(const std::string& op) {
  static const std::map<std::string, size_t> required = {
      {"Add", 2},     {"Div", 2},       {"Gather", 2},    {"MatMul", 2}, {"Mul", 2},   {"Reshape", 2},
      {"Where", 3},   {"Cast", 1},      {"Identity", 1},  {"Not", 1},    {"Slice", 1}, {"Softmax", 1},
      {"Squeeze", 1}, {"Transpose", 1}, {"Unsqueeze", 1}, {"Tanh", 1},   {"Split", 1}, {"LayerNormalization", 1}};
  const auto it = required.find(op);
  return it == required.end() ? 0 : it->second;
}

class Graph {
 public:
  Graph(const onnx::GraphProto& g, std::string origin) : g_(g), origin_(std::move(origin)) {
    for (const auto& t : g.initializer()) initializers_[t.name()] = &t;
    for (const auto& n : g.node()) {
      for (const auto& out : n.output()) producer_[out] = &n;
      for (const auto& in : n.input())
        if (!in.empty()) consumers_[in].push_back(&n);
    }
  }

  template <typename... Args>
  [[noreturn]] void refuse(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: {}", origin_, fmt::format(format, std::forward<Args>(args)...));
  }

  const onnx::NodeProto* producer(const std::string& value) const {
    const auto it = producer_.find(value);
    return it == producer_.end() ? nullptr : it->second;
  }
  std::vector<const onnx::NodeProto*> consumers(const std::string& value, const std::string& op = "") const {
    std::vector<const onnx::NodeProto*> out;
    if (const auto it = consumers_.find(value); it != consumers_.end())
      for (const auto* n : it->second)
        if (op.empty() || n->op_type() == op) out.push_back(n);
    return out;
  }

  // A value known before the run: an initializer or a Constant node's, through Identity nodes and
  // the casts and (un)squeezes of shape arithmetic.
  std::optional<Array> constant(const std::string& value, int depth = 0) const {
    if (const auto it = initializers_.find(value); it != initializers_.end()) return decode(*it->second);
    const onnx::NodeProto* n = producer(value);
    if (!n || depth > 64) return std::nullopt;
    if (n->op_type() == "Identity") return constant(n->input(0), depth + 1);
    // Shape and mask arithmetic casts to integers or booleans (float weights are never cast).
    if (n->op_type() == "Cast") {
      int64_t to = 0;
      for (const auto& a : n->attribute())
        if (a.name() == "to") to = a.i();
      if (to != onnx::TensorProto::INT64 && to != onnx::TensorProto::INT32 && to != onnx::TensorProto::BOOL)
        return std::nullopt;
      std::optional<Array> c = constant(n->input(0), depth + 1);
      if (c)
        for (double& v : c->values)
          v = to == onnx::TensorProto::BOOL ? (v != 0 ? 1.0 : 0.0) : (std::abs(v) < 9e18 ? std::trunc(v) : 0.0);
      return c;
    }
    // Unsqueezed or squeezed (without constant folding): the values, their size-1 dimensions dropped.
    if (n->op_type() == "Unsqueeze" || n->op_type() == "Squeeze") {
      std::optional<Array> c = constant(n->input(0), depth + 1);
      if (c) std::erase(c->dims, 1);
      return c;
    }
    if (n->op_type() != "Constant") return std::nullopt;
    for (const auto& a : n->attribute()) {
      if (a.name() == "value") return decode(a.t());
      if (a.name() == "value_float") return Array{{}, {a.f()}};
      if (a.name() == "value_int") return Array{{}, {static_cast<double>(a.i())}};
      if (a.name() == "value_ints") return Array{{a.ints_size()}, {a.ints().begin(), a.ints().end()}};
    }
    return std::nullopt;
  }

  // A weight: a constant, or a constant transposed ([1, 0]) by a Transpose node.
  std::optional<Array> weight(const std::string& value) const {
    if (auto c = constant(value)) return c;
    const onnx::NodeProto* n = producer(value);
    if (!n || n->op_type() != "Transpose") return std::nullopt;
    auto c = constant(n->input(0));
    if (!c || c->dims.size() != 2) return std::nullopt;
    for (const auto& a : n->attribute())
      if (a.name() == "perm" && (a.ints_size() != 2 || a.ints(0) != 1 || a.ints(1) != 0)) return std::nullopt;
    Array t{{c->dims[1], c->dims[0]}, std::vector<double>(c->values.size())};
    for (int64_t i = 0; i < c->dims[0]; ++i)
      for (int64_t j = 0; j < c->dims[1]; ++j)
        t.values[static_cast<size_t>(j * c->dims[0] + i)] = c->values[static_cast<size_t>(i * c->dims[1] + j)];
    return t;
  }

  Array decode(const onnx::TensorProto& t) const {
    Array a;
    a.dims.assign(t.dims().begin(), t.dims().end());
    int64_t n = 1;
    for (int64_t d : a.dims) {
      if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d))
        refuse("tensor '{}' has shape [{}], which no model tensor has", t.name(), fmt::join(a.dims, ", "));
      n *= d;
    }
    if (t.data_location() == onnx::TensorProto::EXTERNAL)
      refuse("tensor '{}' is stored in an external data file; tessera reads models saved as one .onnx file", t.name());
    const std::string& raw = t.raw_data();
    // The raw bytes as n little-endian elements of T, each widened to double.
    const auto from_raw = [&]<typename T>(T) {
      if (raw.size() != static_cast<size_t>(n) * sizeof(T))
        refuse("tensor '{}' holds {} bytes of data for {} elements of {} bytes (truncated or corrupt)", t.name(),
               raw.size(), n, sizeof(T));
      a.values.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, raw.data() + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
        a.values[static_cast<size_t>(i)] = static_cast<double>(v);
      }
    };
    // Or the typed field holding them.
    const auto from_field = [&](const auto& field) {
      if (field.size() != n)
        refuse("tensor '{}' holds {} values for shape of {} elements (corrupt)", t.name(), field.size(), n);
      a.values.assign(field.begin(), field.end());
    };
    switch (t.data_type()) {
      case onnx::TensorProto::FLOAT:
        raw.empty() ? from_field(t.float_data()) : from_raw(float{});
        break;
      case onnx::TensorProto::FLOAT16:  // the bits, in int32_data without raw data
        raw.empty() ? from_field(t.int32_data()) : from_raw(uint16_t{});
        for (double& v : a.values) v = fp16_to_float(static_cast<uint16_t>(v));
        break;
      case onnx::TensorProto::DOUBLE:
        raw.empty() ? from_field(t.double_data()) : from_raw(double{});
        break;
      case onnx::TensorProto::INT64:
        raw.empty() ? from_field(t.int64_data()) : from_raw(int64_t{});
        break;
      case onnx::TensorProto::INT32:
        raw.empty() ? from_field(t.int32_data()) : from_raw(int32_t{});
        break;
      case onnx::TensorProto::BOOL:
        raw.empty() ? from_field(t.int32_data()) : from_raw(uint8_t{});
        for (double& v : a.values) v = v != 0 ? 1.0 : 0.0;
        break;
      default:
        refuse(
            "tensor '{}' has ONNX element type {}, which tessera does not read (float, float16, double, int32, "
            "int64 or bool)",
            t.name(), t.data_type());
    }
    return a;
  }

  // The nodes on every path from `from` to `to` (values), `to`'s producer included.
  std::vector<const onnx::NodeProto*> between(const std::string& from, const std::string& to) const {
    std::set<std::string> forward{from};
    for (const auto& n : g_.node())  // nodes are topologically sorted
      for (const auto& in : n.input())
        if (forward.contains(in)) {
          for (const auto& out : n.output()) forward.insert(out);
          break;
        }
    std::vector<const onnx::NodeProto*> out;
    std::set<std::string> seen;
    std::vector<std::string> stack{to};
    while (!stack.empty()) {
      const std::string v = stack.back();
      stack.pop_back();
      if (v == from || !seen.insert(v).second || !forward.contains(v)) continue;
      const onnx::NodeProto* n = producer(v);
      if (!n) continue;
      if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
      for (const auto& in : n->input()) stack.push_back(in);
    }
    return out;
  }

  const std::string& origin() const { return origin_; }

 private:
  const onnx::GraphProto& g_;
  std::string origin_;
  std::map<std::string, const onnx::TensorProto*> initializers_;
  std::map<std::string, const onnx::NodeProto*> producer_;
  std::map<std::string, std::vector<const onnx::NodeProto*>> consumers_;
};

class Raiser {
 public:
  Raiser(const Graph& g, ImportedModel& m) : g_(g), m_(m) {}

  // The one node of `op` reading `value`, other than `besides`.
  const onnx::NodeProto& only_consumer(const std::string& value, const std::string& op, const std::string& what,
                                       const onnx::NodeProto* besides = nullptr) const {
    std::vector<const onnx::NodeProto*> found;
    for (const auto* n : g_.consumers(value, op))
      if (n != besides) found.push_back(n);
    if (found.size() != 1)
      g_.refuse("expected {} ({} reading '{}'), found {}; tessera raises GPT-2-style decoders", what, op, value,
                found.size());
    return *found.front();
  }

  // x -> LayerNormalization: its scale and shift under `prefix`.
  const onnx::NodeProto& norm(const std::string& x, const std::string& prefix) {
    const onnx::NodeProto& ln = only_consumer(x, "LayerNormalization", "a LayerNorm of the residual stream");
    double eps = 1e-5;  // the op's default
    for (const auto& a : ln.attribute()) {
      if (a.name() == "axis" && a.i() != -1 && a.i() != 2)
        g_.refuse("{} normalises over axis {}, not the model dimension", describe(ln), a.i());
      if (a.name() == "epsilon") eps = a.f();
    }
    eps_.insert(eps);
    if (ln.input_size() != 3) g_.refuse("{} has no shift (bias); GPT-2's LayerNorms have one", describe(ln));
    tensor(ln.input(1), prefix + ".weight", {m_.d_model}, ln);
    tensor(ln.input(2), prefix + ".bias", {m_.d_model}, ln);
    return ln;
  }

  // y = x @ W + b (W a weight [in, out]; b one, on either side of the Add); returns the Add.
  const onnx::NodeProto& linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out) {
    const onnx::NodeProto& mm = only_consumer(x, "MatMul", "a projection of " + prefix);
    if (mm.input(0) != x) g_.refuse("{} multiplies by its input from the left", describe(mm));
    tensor(mm.input(1), prefix + ".weight", {in, out}, mm);
    const onnx::NodeProto& add = only_consumer(mm.output(0), "Add", "the bias of " + prefix);
    const std::string& bias = add.input(0) == mm.output(0) ? add.input(1) : add.input(0);
    tensor(bias, prefix + ".bias", {out}, add);
    return add;
  }

  void tensor(const std::string& value, const std::string& name, const std::vector<int64_t>& shape,
              const onnx::NodeProto& at) {
    std::optional<Array> w = g_.weight(value);
    if (!w) g_.refuse("{} reads '{}' as {}, which is computed, not a stored weight", describe(at), value, name);
    while (w->dims.size() > shape.size() && w->dims.front() == 1) w->dims.erase(w->dims.begin());  // [1, T, d]
    if (w->dims != shape)
      g_.refuse("{}: '{}' ({}) has shape [{}], expected [{}]", describe(at), value, name, fmt::join(w->dims, ", "),
                fmt::join(shape, ", "));
    const auto bad = std::find_if(w->values.begin(), w->values.end(), [](double v) {
      return !std::isfinite(v) || std::abs(v) > std::numeric_limits<float>::max();
    });
    if (bad != w->values.end())
      g_.refuse("'{}' ({}) holds {} at element {}; the export is corrupt", value, name,
                std::isnan(*bad) ? "NaN" : "an infinity", bad - w->values.begin());
    ImportedTensor t{name, shape, std::vector<float>(w->values.begin(), w->values.end())};
    m_.tensors.push_back(std::move(t));
  }

  // The ops of a block's inner path, counted.
  std::map<std::string, int> op_counts(const std::vector<const onnx::NodeProto*>& nodes) const {
    std::map<std::string, int> counts;
    for (const auto* n : nodes) ++counts[n->op_type()];
    return counts;
  }

  // Attention from the fused q|k|v projection to the output projection's input: split, heads,
  // scaled scores, a causal mask, softmax, weighted values, heads merged.
  void attention(const std::string& qkv, const std::string& merged, const std::string& layer) {
    const auto nodes = g_.between(qkv, merged);
    auto counts = op_counts(nodes);
    const auto expect = [&](const std::string& op, int n) {
      if (counts[op] != n)
        g_.refuse("{}'s attention has {} {} node(s) where a GPT-2 attention has {}", layer, counts[op], op, n);
    };
    expect("Split", 1), expect("MatMul", 2), expect("Softmax", 1), expect("Where", 1);
    for (const auto& [op, n] : counts)
      if (op != "Split" && op != "MatMul" && op != "Softmax" && op != "Where" && op != "Reshape" && op != "Transpose" &&
          op != "Div" && op != "Mul")
        g_.refuse("{}'s attention computes with {} ({} node(s)), which a GPT-2 attention does not", layer, op, n);
    int64_t heads = 0;
    double scale = 1;
    for (const auto* n : nodes) {
      if (n->op_type() == "Reshape" && heads == 0) heads = heads_of(*n);
      if (n->op_type() == "Div" || n->op_type() == "Mul") {
        const std::optional<Array> c = g_.constant(n->input(1));
        if (!c || c->values.size() != 1) g_.refuse("{} does not scale by a constant", describe(*n));
        scale *= n->op_type() == "Div" ? 1 / c->values[0] : c->values[0];
      }
      if (n->op_type() == "Where") causal_mask(*n, layer);
      if (n->op_type() == "Softmax")
        for (const auto& a : n->attribute())
          if (a.name() == "axis" && a.i() != -1 && a.i() != 3)
            g_.refuse("{} normalises over axis {}, not the keys", describe(*n), a.i());
    }
    if (heads <= 0 || m_.d_model % heads != 0)
      g_.refuse("{}: cannot tell the number of heads from its reshapes ({})", layer, heads);
    if (m_.n_heads != 0 && m_.n_heads != heads)
      g_.refuse("{} has {} heads where the layers before have {}", layer, heads, m_.n_heads);
    m_.n_heads = heads;
    const double expected = 1 / std::sqrt(static_cast<double>(m_.d_model / heads));
    if (std::abs(scale - expected) > 1e-5 * expected)
      g_.refuse("{} scales its scores by {:.6g}, not 1/sqrt(head_dim) = {:.6g}", layer, scale, expected);
  }

  // [batch, sequence, heads, head_dim]: the heads from a constant shape or the constant third
  // piece of a shape torch.onnx concatenates.
  int64_t heads_of(const onnx::NodeProto& reshape) const {
    const auto count = [](double v) { return v >= 1 && v <= 65536 ? static_cast<int64_t>(v) : 0; };
    if (const auto c = g_.constant(reshape.input(1))) return c->values.size() == 4 ? count(c->values[2]) : 0;
    const onnx::NodeProto* concat = g_.producer(reshape.input(1));
    if (!concat || concat->op_type() != "Concat" || concat->input_size() != 4) return 0;
    const auto c = g_.constant(concat->input(2));
    return c && c->values.size() == 1 ? count(c->values[0]) : 0;
  }

  // Where(condition, a, b) must replace exactly the scores of keys after the query with -inf (or
  // a value that large): the condition comes from a stored square mask through slices, casts and
  // negations.
  void causal_mask(const onnx::NodeProto& where, const std::string& layer) const {
    bool negated = false;
    std::string v = where.input(0);
    std::optional<Array> mask;
    for (int guard = 0; guard < 16 && !mask; ++guard) {
      if ((mask = g_.constant(v))) break;
      const onnx::NodeProto* n = g_.producer(v);
      if (!n || (n->op_type() != "Not" && n->op_type() != "Cast" && n->op_type() != "Slice" &&
                 n->op_type() != "Unsqueeze" && n->op_type() != "Squeeze"))
        g_.refuse("{}: {}'s condition is not a stored causal mask", layer, describe(where));
      negated ^= n->op_type() == "Not";
      v = n->input(0);
    }
    const std::optional<Array> a = g_.constant(where.input(1)), b = g_.constant(where.input(2));
    const auto hides = [](const std::optional<Array>& c) { return c && c->values.size() == 1 && c->values[0] < -1e4; };
    if (mask) std::erase(mask->dims, 1);  // a mask broadcast over batch and heads
    if (!mask || mask->dims.size() != 2 || mask->dims[0] != mask->dims[1] || (hides(a) == hides(b)))
      g_.refuse("{}: {} is not a causal mask over stored positions (a square mask filling -inf)", layer,
                describe(where));
    // Where fills `a` where the condition holds: the hidden scores are where it holds if `a` is the
    // fill, else where it does not.
    const bool hide_where_true = hides(a);
    const int64_t n = mask->dims[0];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const bool condition = (mask->values[static_cast<size_t>(i * n + j)] != 0) != negated;
        const bool hidden = condition == hide_where_true;
        if (hidden != (j > i))
          g_.refuse("{}: {} {} query {}'s key {}, which a causal mask {}", layer, describe(where),
                    hidden ? "hides" : "keeps", i, j, j > i ? "hides" : "keeps");
      }
    if (n < m_.context_length)
      g_.refuse("{}: the causal mask covers {} positions, fewer than the {} position embeddings", layer, n,
                m_.context_length);
  }

  // GELU's tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), between the MLP's
  // projections.
  void gelu(const std::string& from, const std::string& to, const std::string& layer) const {
    const auto nodes = g_.between(from, to);
    std::set<long> constants;
    for (const auto* n : nodes) {
      if (n->op_type() != "Mul" && n->op_type() != "Add" && n->op_type() != "Tanh" && n->op_type() != "Pow" &&
          n->op_type() != "Div")
        g_.refuse(
            "{}'s MLP activation uses {}; tessera's GPT-2 family uses GELU's tanh form (F.gelu(x, "
            "approximate='tanh'), Hugging Face's gelu_new)",
            layer, describe(*n));
      for (const auto& in : n->input())
        if (const auto c = g_.constant(in); c && c->values.size() == 1 && std::abs(c->values[0]) < 1e3)
          constants.insert(std::lround(c->values[0] * 1e6));
    }
    if (op_counts(nodes)["Tanh"] != 1 || !constants.contains(44715) || !constants.contains(797885))
      g_.refuse("{}'s MLP activation is not GELU's tanh form (0.5 x (1 + tanh(0.797885 (x + 0.044715 x^3))))", layer);
  }

 private:
  const Graph& g_;
  ImportedModel& m_;

 public:
  std::set<double> eps_;
};

}  // namespace

ImportedModel import_onnx(const std::string& bytes, const std::string& origin) {
  onnx::ModelProto proto;
  if (bytes.empty() || !proto.ParseFromString(bytes) || !proto.has_graph() || proto.graph().node_size() == 0)
    fail("{}: not an ONNX model (it does not parse as an ONNX ModelProto with a graph; truncated, or another format)",
         origin);
  const onnx::GraphProto& graph = proto.graph();
  const Graph g(graph, origin);
  for (const auto& n : graph.node()) {
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      g.refuse("{} is from operator set '{}'; tessera raises standard ONNX ops only", describe(n), n.domain());
    if (n.op_type() == "Erf")
      g.refuse(
          "{}: exact (erf) GELU; tessera's GPT-2 family uses GELU's tanh form (F.gelu(x, approximate='tanh'), "
          "Hugging Face's gelu_new): re-export with it",
          describe(n));
    if (n.output_size() == 0 || static_cast<size_t>(n.input_size()) < required_inputs(n.op_type()))
      g.refuse("{} has {} inputs and {} outputs; ONNX's {} takes at least {} and gives one", describe(n),
               n.input_size(), n.output_size(), n.op_type(), required_inputs(n.op_type()));
    if (n.op_type() == "ReduceMean")
      g.refuse(
          "{}: a norm decomposed into elementary ops: an RMSNorm (a Llama-style export, which tessera does "
          "not raise from ONNX yet: give the Hugging Face directory, config.json and safetensors), or a "
          "LayerNorm exported at opset < 17 (re-export with opset_version=17, where it is one "
          "LayerNormalization node)",
          describe(n));
    if (!known_ops().contains(n.op_type()))
      g.refuse(
          "{}: tessera does not import {} nodes; it raises GPT-2-style decoders exported by torch.onnx (see "
          "docs/inputs.md, ONNX)",
          describe(n), n.op_type());
  }
  std::vector<std::string> inputs;
  std::set<std::string> stored;
  for (const auto& t : graph.initializer()) stored.insert(t.name());
  for (const auto& in : graph.input())
    if (!stored.contains(in.name())) inputs.push_back(in.name());
  if (inputs.size() != 1 || graph.output_size() != 1)
    g.refuse(
        "the graph has {} inputs and {} outputs; a decoder exported for tessera takes token ids and returns "
        "logits",
        inputs.size(), graph.output_size());

  ImportedModel m;
  Raiser r(g, m);
  // Token and position embeddings: Gather(wte, ids) + Gather(wpe, positions).
  const onnx::NodeProto& tokens = r.only_consumer(inputs[0], "Gather", "the token embedding lookup");
  const std::optional<Array> wte = g.constant(tokens.input(0));
  if (!wte || wte->dims.size() != 2) g.refuse("{} does not read a stored token table", describe(tokens));
  m.vocab_size = wte->dims[0], m.d_model = wte->dims[1];
  const onnx::NodeProto& embed = r.only_consumer(tokens.output(0), "Add", "the position embeddings' Add");
  // Positions: a lookup in the stored table, or (an export with a static sequence length, its
  // lookup folded by torch.onnx) the table's first rows as a constant: then that length is the
  // context the model is known for.
  std::string table = embed.input(0) == tokens.output(0) ? embed.input(1) : embed.input(0);
  if (const onnx::NodeProto* lookup = g.producer(table); lookup && lookup->op_type() == "Gather")
    table = lookup->input(0);
  std::optional<Array> wpe = g.constant(table);
  if (wpe) std::erase(wpe->dims, 1);
  if (!wpe || wpe->dims.size() != 2 || wpe->dims[1] != m.d_model)
    g.refuse("{} does not add a stored position table [context, {}] (learned positions, as GPT-2's)", describe(embed),
             m.d_model);
  m.context_length = wpe->dims[0];
  r.tensor(tokens.input(0), "wte.weight", wte->dims, tokens);
  r.tensor(table, "wpe.weight", wpe->dims, embed);

  std::string x = embed.output(0);
  for (;; ++m.n_layers) {
    if (m.n_layers > 4096) g.refuse("more than 4,096 blocks: the graph loops");
    const std::string p = fmt::format("h.{}.", m.n_layers);
    const auto residual = g.consumers(x, "Add");
    if (residual.empty()) break;  // only the final norm reads it
    if (residual.size() != 1)
      g.refuse("the residual stream '{}' is read by {} Add nodes; a GPT-2 block adds to it once", x, residual.size());
    const onnx::NodeProto& ln1 = r.norm(x, p + "ln_1");
    const onnx::NodeProto& qkv = r.linear(ln1.output(0), p + "attn.c_attn", m.d_model, 3 * m.d_model);
    // The attention block ends in x + (merged @ c_proj + b).
    const onnx::NodeProto& add1 = *residual.front();
    const onnx::NodeProto* proj_bias = g.producer(add1.input(0) == x ? add1.input(1) : add1.input(0));
    const onnx::NodeProto* proj = nullptr;
    if (proj_bias && proj_bias->op_type() == "Add")
      for (const auto& in : proj_bias->input())
        if (const auto* n = g.producer(in); n && n->op_type() == "MatMul") proj = n;
    if (!proj) g.refuse("{} does not add an attention output projection to the residual stream", describe(add1));
    r.attention(qkv.output(0), proj->input(0), "layer " + std::to_string(m.n_layers));
    const onnx::NodeProto& proj_add = r.linear(proj->input(0), p + "attn.c_proj", m.d_model, m.d_model);
    if (&proj_add != proj_bias) g.refuse("{}: the attention output is not added as projected", describe(add1));
    x = add1.output(0);
    // The MLP: x + gelu(ln_2(x) @ c_fc + b) @ c_proj + b.
    const auto residual2 = g.consumers(x, "Add");
    if (residual2.size() != 1) g.refuse("the MLP of layer {} does not add to the residual stream once", m.n_layers);
    const onnx::NodeProto& ln2 = r.norm(x, p + "ln_2");
    const onnx::NodeProto& mm = r.only_consumer(ln2.output(0), "MatMul", "the MLP's first projection");
    const std::optional<Array> fc = g.weight(mm.input(1));
    if (!fc || fc->dims.size() != 2) g.refuse("{} does not multiply by a stored weight", describe(mm));
    if (m.d_ff != 0 && m.d_ff != fc->dims[1]) g.refuse("{}: layers of different MLP widths", describe(mm));
    m.d_ff = fc->dims[1];
    const onnx::NodeProto& hidden = r.linear(ln2.output(0), p + "mlp.c_fc", m.d_model, m.d_ff);
    const onnx::NodeProto& add2 = *residual2.front();
    const onnx::NodeProto* out_bias = g.producer(add2.input(0) == x ? add2.input(1) : add2.input(0));
    const onnx::NodeProto* out = nullptr;
    if (out_bias && out_bias->op_type() == "Add")
      for (const auto& in : out_bias->input())
        if (const auto* n = g.producer(in); n && n->op_type() == "MatMul") out = n;
    if (!out) g.refuse("{} does not add the MLP's output projection to the residual stream", describe(add2));
    r.gelu(hidden.output(0), out->input(0), "layer " + std::to_string(m.n_layers));
    if (&r.linear(out->input(0), p + "mlp.c_proj", m.d_ff, m.d_model) != out_bias)
      g.refuse("{}: the MLP output is not added as projected", describe(add2));
    x = add2.output(0);
  }
  if (m.n_layers == 0) g.refuse("no transformer block reads the embeddings");
  // The final norm and the LM head, tied to the token table.
  const onnx::NodeProto& ln_f = r.norm(x, "ln_f");
  const onnx::NodeProto& head = r.only_consumer(ln_f.output(0), "MatMul", "the LM head");
  if (head.output(0) != graph.output(0).name())
    g.refuse("{}: the LM head's product is not the graph's output (logits)", describe(head));
  const std::optional<Array> lm = g.weight(head.input(1));
  if (!lm || lm->dims != std::vector<int64_t>{m.d_model, m.vocab_size})
    g.refuse("{} does not multiply by a stored [{}, {}] matrix", describe(head), m.d_model, m.vocab_size);
  for (int64_t v = 0; v < m.vocab_size; ++v)
    for (int64_t k = 0; k < m.d_model; ++k)
      if (lm->values[static_cast<size_t>(k * m.vocab_size + v)] != wte->values[static_cast<size_t>(v * m.d_model + k)])
        g.refuse(
            "{}: the LM head is a matrix of its own, not the token table transposed; tessera's GPT-2 family "
            "ties them",
            describe(head));
  if (r.eps_.size() != 1) g.refuse("the LayerNorms use {} different epsilons", r.eps_.size());
  m.norm_eps = static_cast<double>(static_cast<float>(*r.eps_.begin()));
  return m;
}

std::string shape_yaml(const ImportedModel& m) {
  return fmt::format(
      "family: {}\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: {}\nn_heads: {}\nn_kv_heads: {}\n"
      "d_ff: {}\nnorm_eps: {}\ntie_embeddings: true\n",
      m.family, m.vocab_size, m.context_length, m.d_model, m.n_layers, m.n_heads, m.n_heads, m.d_ff, m.norm_eps);
}

}  // namespace tessera::onnx_import
