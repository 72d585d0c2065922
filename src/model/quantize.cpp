#include "tessera/model/quantize.hpp"

#include <algorithm>

#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"

namespace tessera::model {

namespace {

// Matrices stored [in, out] (GPT-2 Conv1D, op matmul) have their output channels in columns.
bool channels_in_columns(const ir::Graph& graph, int param) {
  for (const auto& node : graph.nodes())
    if (node.op == ir::OpKind::MatMul && node.inputs.size() > 1 && node.inputs[1] == param) return true;
  return false;
}

std::vector<float> transpose(std::span<const float> m, int64_t rows, int64_t cols) {
  std::vector<float> t(m.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = m[static_cast<size_t>(r * cols + c)];
  return t;
}

}  // namespace

Weights quantize_weights(const ir::Graph& graph, const Weights& weights, const std::string& format, int64_t group) {
  const bool integer = format == "int8" || format == "int4" || format == "ternary";
  const FloatFormat fmt = integer ? FloatFormat::F32 : parse_float_format(format);
  Weights out;
  for (size_t id = 0; id < graph.nodes().size(); ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op != ir::OpKind::Param || out.find(node.name)) continue;
    Tensor t = weights.at(node.name);
    if (t.shape.size() == 2) {
      if (!integer) {
        for (float& v : t.values) v = round_to_format(v, fmt);
      } else if (format == "ternary") {
        t.values = quantize_ternary(t.values);
      } else {
        // Put output channels in rows, quantise row by row, put them back.
        const bool columns = channels_in_columns(graph, static_cast<int>(id));
        const int64_t channels = columns ? t.shape[1] : t.shape[0], inputs = columns ? t.shape[0] : t.shape[1];
        std::vector<float> rows = columns ? transpose(t.values, t.shape[0], t.shape[1]) : t.values;
        if (format == "int8") {
          rows = quantize_int8_per_row(rows, channels, inputs);
        } else {
          if (inputs % group != 0)
            fail("int4 group size {} does not divide the {} inputs of '{}'; choose a divisor of {}", group, inputs,
                 node.name, inputs);
          rows = quantize_int4_groups(rows, channels, inputs, group);
        }
        t.values = columns ? transpose(rows, channels, inputs) : rows;
      }
    }
    out.insert(node.name, std::move(t));
  }
  return out;
}

}  // namespace tessera::model
