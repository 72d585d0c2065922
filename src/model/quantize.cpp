#include "tessera/model/quantize.hpp"

#include <algorithm>
#include <cmath>

#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"
#include "tessera/base/precision.hpp"

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

namespace {

// Indices of the `keep` largest scores (ties: lower index first).
std::vector<size_t> top(const std::vector<double>& score, size_t keep) {
  std::vector<size_t> order(score.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  order.resize(std::min(keep, order.size()));
  return order;
}

}  // namespace

Weights prune_weights(const ir::Graph& graph, const Weights& weights, const std::string& spec) {
  const SparsityPattern p = parse_sparsity(spec);
  if (p.dense()) return weights;
  Weights out;
  for (size_t id = 0; id < graph.nodes().size(); ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op != ir::OpKind::Param || out.find(node.name)) continue;
    Tensor t = weights.at(node.name);
    const bool matrix = t.shape.size() == 2 && node.name.find("wte") == std::string::npos &&
                        node.name.find("wpe") == std::string::npos &&
                        node.name.find("embed_tokens") == std::string::npos;
    if (!matrix) {
      out.insert(node.name, std::move(t));
      continue;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1];
    std::vector<float> kept(t.values.size(), 0.0f);
    if (p.kind == SparsityPattern::Kind::Unstructured) {
      std::vector<double> score(t.values.size());
      for (size_t i = 0; i < score.size(); ++i) score[i] = std::abs(t.values[i]);
      for (size_t i : top(score, static_cast<size_t>(std::llround(p.density * static_cast<double>(score.size())))))
        kept[i] = t.values[i];
    } else if (p.kind == SparsityPattern::Kind::NM) {
      // Runs of M inputs within each output channel.
      const bool columns = channels_in_columns(graph, static_cast<int>(id));
      const int64_t channels = columns ? cols : rows, inputs = columns ? rows : cols;
      if (inputs % p.m != 0)
        fail("prune {}: M = {} does not divide the {} inputs of '{}'", p.spec, p.m, inputs, node.name);
      for (int64_t ch = 0; ch < channels; ++ch)
        for (int64_t g = 0; g < inputs; g += p.m) {
          auto at = [&](int64_t k) { return static_cast<size_t>(columns ? (g + k) * cols + ch : ch * cols + g + k); };
          std::vector<double> score(static_cast<size_t>(p.m));
          for (int64_t k = 0; k < p.m; ++k) score[static_cast<size_t>(k)] = std::abs(t.values[at(k)]);
          for (size_t k : top(score, static_cast<size_t>(p.n)))
            kept[at(static_cast<int64_t>(k))] = t.values[at(static_cast<int64_t>(k))];
        }
    } else {
      if (rows % p.block != 0 || cols % p.block != 0)
        fail("prune {}: {}x{} blocks do not tile '{}' ({}x{}); choose a block size dividing both", p.spec, p.block,
             p.block, node.name, rows, cols);
      const int64_t br = rows / p.block, bc = cols / p.block;
      std::vector<double> score(static_cast<size_t>(br * bc), 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          score[static_cast<size_t>((r / p.block) * bc + c / p.block)] +=
              std::abs(t.values[static_cast<size_t>(r * cols + c)]);
      for (size_t b : top(score, static_cast<size_t>(std::llround(p.density * static_cast<double>(score.size()))))) {
        const int64_t r0 = static_cast<int64_t>(b) / bc * p.block, c0 = static_cast<int64_t>(b) % bc * p.block;
        for (int64_t r = r0; r < r0 + p.block; ++r)
          for (int64_t c = c0; c < c0 + p.block; ++c)
            kept[static_cast<size_t>(r * cols + c)] = t.values[static_cast<size_t>(r * cols + c)];
      }
    }
    t.values = std::move(kept);
    out.insert(node.name, std::move(t));
  }
  return out;
}

}  // namespace tessera::model
