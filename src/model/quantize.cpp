#include "tessera/model/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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

namespace {

float largest_finite(FloatFormat format) {
  switch (format) {
    case FloatFormat::F32:
      return std::numeric_limits<float>::max();
    case FloatFormat::BF16:
      return 3.3895314e38f;
    case FloatFormat::F16:
      return 65504.0f;
    case FloatFormat::F8E4M3:
      return 448.0f;
    case FloatFormat::F8E5M2:
      return 57344.0f;
  }
  return std::numeric_limits<float>::max();
}

// Quantises `values` (rows of `block` elements, each with one scale) in place.
void quantize_blocks(std::vector<float>& values, int64_t block, const std::string& format, bool scaled) {
  const auto blocks = static_cast<int64_t>(values.size()) / block;
  if (format == "int8") {
    values = quantize_int8_per_row(values, blocks, block);
  } else if (format == "int4") {
    values = quantize_int4_groups(values, blocks, block, block);
  } else if (format == "ternary") {
    for (int64_t b = 0; b < blocks; ++b) {
      const std::span<float> one(values.data() + b * block, static_cast<size_t>(block));
      const std::vector<float> q = quantize_ternary(one);
      std::copy(q.begin(), q.end(), one.begin());
    }
  } else {
    const FloatFormat f = parse_float_format(format);
    for (int64_t b = 0; b < blocks; ++b) {
      float* v = values.data() + b * block;
      float peak = 0;
      for (int64_t i = 0; i < block; ++i) peak = std::max(peak, std::abs(v[i]));
      // The block's largest magnitude maps to the format's largest finite value.
      const float scale = scaled && peak > 0 ? peak / largest_finite(f) : 1.0f;
      for (int64_t i = 0; i < block; ++i) v[i] = round_to_format(v[i] / scale, f) * scale;
    }
  }
}

}  // namespace

Weights quantize_weights(const ir::Graph& graph, const Weights& weights, const std::string& format, int64_t group,
                         const std::string& scales) {
  PrecisionPolicy policy;
  policy.weights = format, policy.group = group, policy.scales = scales;
  policy.validate();
  const std::string granularity = resolved_scales(format, scales);
  Weights out;
  for (size_t id = 0; id < graph.nodes().size(); ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op != ir::OpKind::Param || out.find(node.name)) continue;
    Tensor t = weights.at(node.name);
    if (t.shape.size() == 2) {
      // Put output channels in rows, quantise block by block, put them back.
      const bool columns = channels_in_columns(graph, static_cast<int>(id));
      const int64_t channels = columns ? t.shape[1] : t.shape[0], inputs = columns ? t.shape[0] : t.shape[1];
      std::vector<float> rows = columns ? transpose(t.values, t.shape[0], t.shape[1]) : t.values;
      int64_t block = channels * inputs;
      if (granularity == "channel") block = inputs;
      if (granularity == "group") {
        if (inputs % group != 0)
          fail("group size {} does not divide the {} inputs of '{}'; choose a divisor of {}", group, inputs, node.name,
               inputs);
        block = group;
      }
      quantize_blocks(rows, block, format, granularity != "none");
      t.values = columns ? transpose(rows, channels, inputs) : rows;
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
