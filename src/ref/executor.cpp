#include "tessera/ref/executor.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tessera/base/error.hpp"
#include "tessera/ref/kernels.hpp"

namespace tessera::ref {

using ir::OpKind;

namespace {

int64_t cols_of(const ir::Node& node) { return node.type.shape.dims.back(); }

// Meta's Llama 3.1 apply_scaling(), applied to one inverse frequency (all in double).
double scaled_inv_freq(const ir::Node& node, double inv_freq) {
  if (!node.attrs.contains("scaling_factor")) return inv_freq;
  const double factor = node.float_attr("scaling_factor"), lo = node.float_attr("low_freq_factor"),
               hi = node.float_attr("high_freq_factor"), old = node.float_attr("original_context_length");
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  if (wavelen < old / hi) return inv_freq;
  if (wavelen > old / lo) return inv_freq / factor;
  const double smooth = (old / wavelen - lo) / (hi - lo);
  return (1 - smooth) * inv_freq / factor + smooth * inv_freq;
}

}  // namespace

ReferenceExecutor::ReferenceExecutor(const ir::Graph& graph, const model::Weights& weights, int64_t max_context,
                                     const PrecisionPolicy& precision, const Partitioning& partitioning)
    : graph_(graph),
      max_context_(max_context),
      activations_(parse_float_format(precision.activations)),
      kv_(parse_float_format(precision.kv)),
      position_block_(partitioning.position_block) {
  if (const Status s = graph.verify(); !s) fail("cannot execute an invalid graph: {}", s.message());
  if (graph.outputs().size() != 1) fail("the reference executor runs graphs with one output (the logits)");
  for (const ir::Node& node : graph.nodes())
    if (ir::op_info(node.op).training)
      fail("the reference executor runs inference graphs; '{}' is a training op (ref::Trainer runs those)", node.name);
  const size_t n = graph.nodes().size();
  params_.assign(n, nullptr);
  k_parts_.assign(n, 1);
  k_parts_decode_.assign(n, 1);
  std::map<std::string, int> matmul_by_weight;
  for (size_t id = 0; id < n; ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op == OpKind::MatMul || node.op == OpKind::Linear)
      matmul_by_weight[graph.node(node.inputs[1]).name] = static_cast<int>(id);
  }
  for (const auto* parts : {&partitioning.k_parts, &partitioning.k_parts_decode})
    for (const auto& [weight, count] : *parts) {
      const auto it = matmul_by_weight.find(weight);
      if (it == matmul_by_weight.end())
        fail("partitioning: '{}' is not a weight any matmul of the graph reads", weight);
      if (count < 1) fail("partitioning: '{}' split into {} parts", weight, count);
      (parts == &partitioning.k_parts ? k_parts_ : k_parts_decode_)[static_cast<size_t>(it->second)] = count;
    }
  if (partitioning.k_parts_decode.empty()) k_parts_decode_ = k_parts_;
  if (position_block_ < 0) fail("partitioning: position block {} must be >= 0", position_block_);
  buffers_.resize(n);
  int_buffers_.resize(n);
  for (size_t id = 0; id < n; ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op == OpKind::Param) {
      const model::Tensor* t = weights.find(node.name);
      if (!t) fail("no weights bound for parameter '{}'", node.name);
      if (t->shape != node.type.shape.dims)
        fail("weights for '{}' have shape {} but the graph needs {}", node.name, ir::Shape{t->shape}.str(),
             node.type.shape.str());
      params_[id] = t->values.data();
    } else if (node.op == OpKind::Attention) {
      const auto width = static_cast<size_t>(node.int_attr("n_kv_heads") * node.int_attr("head_dim"));
      auto& cache = caches_[node.int_attr("layer")];
      cache.keys.assign(static_cast<size_t>(max_context) * width, 0.0f);
      cache.values.assign(static_cast<size_t>(max_context) * width, 0.0f);
    } else if (node.op == OpKind::Rope) {
      rope_tables_[id] = rope_table(node, max_context);
    }
  }
  vocab_size_ = cols_of(graph.node(graph.outputs()[0]));
}

RopeTable rope_table(const ir::Node& node, int64_t max_context) {
  const int64_t hd = node.int_attr("head_dim"), half = hd / 2;
  RopeTable table{std::vector<float>(static_cast<size_t>(max_context * half)),
                  std::vector<float>(static_cast<size_t>(max_context * half))};
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = scaled_inv_freq(
        node, 1.0 / std::pow(node.float_attr("theta"), static_cast<double>(2 * i) / static_cast<double>(hd)));
    for (int64_t p = 0; p < max_context; ++p) {
      const double angle = static_cast<double>(p) * inv_freq;
      table.cos[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(angle));
      table.sin[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

std::span<const float> ReferenceExecutor::forward(std::span<const int32_t> tokens, bool last_only) {
  const auto rows = static_cast<int64_t>(tokens.size());
  if (rows == 0) fail("forward() needs at least one token");
  if (position_ + rows > max_context_)
    fail("context overflow: {} cached + {} new tokens exceed the context of {} tokens", position_, rows, max_context_);
  const int tokens_id = graph_.find_input("tokens"), positions_id = graph_.find_input("positions");
  TESSERA_ASSERT(tokens_id >= 0);
  int_buffers_[static_cast<size_t>(tokens_id)].assign(tokens.begin(), tokens.end());
  if (positions_id >= 0) {
    auto& pos = int_buffers_[static_cast<size_t>(positions_id)];
    pos.resize(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(position_ + i);
  }
  // One segment: every token is of type 0 (a sentence pair's second segment is not modelled).
  if (const int types_id = graph_.find_input("token_types"); types_id >= 0)
    int_buffers_[static_cast<size_t>(types_id)].assign(static_cast<size_t>(rows), 0);
  const auto output = static_cast<size_t>(graph_.outputs()[0]);
  for (size_t id = 0; id < graph_.nodes().size(); ++id) run_node(id, rows, last_only && id == output);
  position_ += rows;
  return buffers_[output];
}

const float* ReferenceExecutor::input(const ir::Node& node, size_t i) const {
  const auto src = static_cast<size_t>(node.inputs[i]);
  return params_[src] ? params_[src] : buffers_[src].data();
}

void ReferenceExecutor::run_node(size_t id, int64_t rows, bool last_row_only) {
  const ir::Node& node = graph_.node(static_cast<int>(id));
  if (node.op == OpKind::Input || node.op == OpKind::Param) return;
  auto in = [&](size_t i) { return input(node, i); };
  const int64_t cols = cols_of(node);
  auto& out = buffers_[id];
  const int64_t out_rows = last_row_only ? 1 : rows;
  out.resize(static_cast<size_t>(out_rows * cols));
  const auto count = static_cast<size_t>(rows * cols);
  switch (node.op) {
    case OpKind::Input:
    case OpKind::Param:
      break;
    case OpKind::Embedding: {
      const float* table = in(0);
      const auto& ids = int_buffers_[static_cast<size_t>(node.inputs[1])];
      const int64_t table_rows = graph_.node(node.inputs[0]).type.shape.dims[0];
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = ids[static_cast<size_t>(r)];
        if (t < 0 || t >= table_rows)
          fail(
              "{}: index {} is outside the table of {} rows (token id out of vocabulary, or position beyond the "
              "context)",
              graph_.node(node.inputs[0]).name, t, table_rows);
        std::copy_n(table + t * cols, cols, out.data() + r * cols);
      }
      break;
    }
    case OpKind::Add: {
      const float *a = in(0), *b = in(1);
      for (size_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
      break;
    }
    case OpKind::Mul: {
      const float *a = in(0), *b = in(1);
      for (size_t i = 0; i < count; ++i) out[i] = a[i] * b[i];
      break;
    }
    case OpKind::LayerNorm:
    case OpKind::RmsNorm:
      kernels::norm(in(0), in(1), node.op == OpKind::LayerNorm ? in(2) : nullptr, node.float_attr("eps"), rows, cols,
                    out.data());
      break;
    case OpKind::MatMul:
    case OpKind::Linear: {
      const auto& w = graph_.node(node.inputs[1]).type.shape.dims;
      const bool linear = node.op == OpKind::Linear;
      const int64_t k = linear ? w[1] : w[0];
      const float* x = in(0) + (last_row_only ? (rows - 1) * k : 0);
      if (activations_ != FloatFormat::F32) {
        rounded_.resize(static_cast<size_t>(out_rows * k));
        for (size_t e = 0; e < rounded_.size(); ++e) rounded_[e] = round_to_format(x[e], activations_);
        x = rounded_.data();
      }
      const bool has_bias = node.inputs.size() == 3;
      const auto n = static_cast<blasint>(cols), kk = static_cast<blasint>(k);
      const int64_t parts = (rows == 1 ? k_parts_decode_ : k_parts_)[id];
      float beta = 0.0f;
      if (has_bias && parts == 1) {
        for (int64_t r = 0; r < out_rows; ++r) std::copy_n(in(2), cols, out.data() + r * cols);
        beta = 1.0f;
      }
      if (parts > 1) {
        // Each part's products summed on its own, the partial sums added in part order, the bias last.
        kernels::split_k_matmul(x, k, in(1), linear, out_rows, k, cols, parts, out.data(), partial_);
        if (has_bias)
          for (int64_t r = 0; r < out_rows; ++r)
            for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(r * cols + c)] += in(2)[c];
      } else if (out_rows == 1) {
        if (linear)
          cblas_sgemv(CblasRowMajor, CblasNoTrans, n, kk, 1.0f, in(1), kk, x, 1, beta, out.data(), 1);
        else
          cblas_sgemv(CblasRowMajor, CblasTrans, kk, n, 1.0f, in(1), n, x, 1, beta, out.data(), 1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, linear ? CblasTrans : CblasNoTrans, static_cast<blasint>(out_rows), n,
                    kk, 1.0f, x, kk, in(1), linear ? kk : n, beta, out.data(), n);
      }
      break;
    }
    case OpKind::Gelu:
      (ir::is_exact_gelu(node) ? kernels::gelu_exact : kernels::gelu)(in(0), static_cast<int64_t>(count), out.data());
      break;
    case OpKind::Silu:
      kernels::silu(in(0), static_cast<int64_t>(count), out.data());
      break;
    case OpKind::SliceCols: {
      const float* x = in(0);
      const int64_t start = node.int_attr("start"), src_cols = cols_of(graph_.node(node.inputs[0]));
      for (int64_t r = 0; r < rows; ++r) std::copy_n(x + r * src_cols + start, cols, out.data() + r * cols);
      break;
    }
    case OpKind::Rope:
      rope(node, id, rows);
      break;
    case OpKind::Attention:
      attention(node, id, rows);
      break;
    case OpKind::MoeExperts:
      experts(node, id, rows, last_row_only);
      break;
    default:
      TESSERA_ASSERT(false);
  }
}

// Each row goes to its top_k experts by router logit (the lower index first among equal logits),
// weighted by the softmax of those logits; the experts' outputs are added in expert order, as
// Mixtral's reference loop over experts adds them. Rows routed to one expert run as one product.
void ReferenceExecutor::experts(const ir::Node& node, size_t id, int64_t rows, bool last_row_only) {
  const int64_t d = cols_of(node), n_experts = node.int_attr("n_experts"), top_k = node.int_attr("top_k");
  const int64_t f = graph_.node(node.inputs[2]).type.shape.dims[0], first = last_row_only ? rows - 1 : 0;
  auto in = [&](size_t i) { return input(node, i); };
  const float *x = in(0) + first * d, *logits = in(1) + first * n_experts;
  const int64_t out_rows = rows - first;
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(n_experts));
  std::vector<int64_t> order;
  std::vector<std::pair<int64_t, float>> chosen(static_cast<size_t>(top_k));
  for (int64_t r = 0; r < out_rows; ++r) {
    kernels::route_token(logits + r * n_experts, n_experts, top_k, order, chosen.data());
    for (const auto& [e, weight] : chosen) routed[static_cast<size_t>(e)].emplace_back(r, weight);
  }
  auto& out = buffers_[id];
  std::fill(out.begin(), out.end(), 0.0f);
  auto round_all = [&](std::vector<float>& v) {
    if (activations_ != FloatFormat::F32)
      for (float& e : v) e = round_to_format(e, activations_);
  };
  std::vector<float> xs, gate, up, y;
  for (int64_t e = 0; e < n_experts; ++e) {
    const auto& rows_of = routed[static_cast<size_t>(e)];
    const auto n = static_cast<int64_t>(rows_of.size());
    if (n == 0) continue;
    xs.resize(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i) std::copy_n(x + rows_of[static_cast<size_t>(i)].first * d, d, xs.data() + i * d);
    round_all(xs);
    gate.resize(static_cast<size_t>(n * f)), up.resize(gate.size()), y.resize(xs.size());
    const float *w1 = in(static_cast<size_t>(2 + 3 * e)), *w3 = in(static_cast<size_t>(3 + 3 * e)),
                *w2 = in(static_cast<size_t>(4 + 3 * e));
    const auto bn = static_cast<blasint>(n), bd = static_cast<blasint>(d), bf = static_cast<blasint>(f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, bf, bd, 1.0f, xs.data(), bd, w1, bd, 0.0f, gate.data(),
                bf);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, bf, bd, 1.0f, xs.data(), bd, w3, bd, 0.0f, up.data(), bf);
    kernels::silu(gate.data(), n * f, gate.data());
    for (size_t i = 0; i < gate.size(); ++i) gate[i] *= up[i];
    round_all(gate);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, bd, bf, 1.0f, gate.data(), bf, w2, bf, 0.0f, y.data(), bd);
    for (int64_t i = 0; i < n; ++i) {
      const auto [row, weight] = rows_of[static_cast<size_t>(i)];
      for (int64_t c = 0; c < d; ++c)
        out[static_cast<size_t>(row * d + c)] += weight * y[static_cast<size_t>(i * d + c)];
    }
  }
}

void ReferenceExecutor::rope(const ir::Node& node, size_t id, int64_t rows) {
  const float* x = buffers_[static_cast<size_t>(node.inputs[0])].data();
  const auto& positions = int_buffers_[static_cast<size_t>(node.inputs[1])];
  const RopeTable& table = rope_tables_.at(id);
  const int64_t hd = node.int_attr("head_dim"), half = hd / 2, heads = node.int_attr("n_heads");
  float* out = buffers_[id].data();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = positions[static_cast<size_t>(r)];
    const float* c = table.cos.data() + p * half;
    const float* s = table.sin.data() + p * half;
    for (int64_t h = 0; h < heads; ++h)
      kernels::rope_head(x + (r * heads + h) * hd, c, s, hd, false, out + (r * heads + h) * hd);
  }
}

// Softmax-weighted values over `visible` scores, a block of position_block_ keys at a time: each
// block's max, sum of exponentials and weighted values on their own (fp32), then combined.
void ReferenceExecutor::blocked_softmax_values(const float* scores, int64_t visible, const float* values,
                                               int64_t stride, int64_t hd, float* out) const {
  std::vector<float> block_max, block_sum, block_out;
  for (int64_t b0 = 0; b0 < visible; b0 += position_block_) {
    const int64_t b1 = std::min(visible, b0 + position_block_);
    float m = -INFINITY, sum = 0.0f;
    for (int64_t j = b0; j < b1; ++j) m = std::max(m, scores[j]);
    block_out.resize(block_out.size() + static_cast<size_t>(hd), 0.0f);
    float* o = block_out.data() + block_out.size() - hd;
    for (int64_t j = b0; j < b1; ++j) {
      const float w = std::exp(scores[j] - m);
      sum += w;
      for (int64_t d = 0; d < hd; ++d) o[d] += w * values[j * stride + d];
    }
    block_max.push_back(m), block_sum.push_back(sum);
  }
  const float m = *std::max_element(block_max.begin(), block_max.end());
  float total = 0.0f;
  std::fill_n(out, hd, 0.0f);
  for (size_t b = 0; b < block_max.size(); ++b) {
    const float rescale = std::exp(block_max[b] - m);
    total += block_sum[b] * rescale;
    for (int64_t d = 0; d < hd; ++d)
      out[d] += block_out[b * static_cast<size_t>(hd) + static_cast<size_t>(d)] * rescale;
  }
  for (int64_t d = 0; d < hd; ++d) out[d] /= total;
}

void ReferenceExecutor::attention(const ir::Node& node, size_t id, int64_t rows) {
  const int64_t heads = node.int_attr("n_heads"), kv_heads = node.int_attr("n_kv_heads"),
                hd = node.int_attr("head_dim");
  const int64_t kv_width = kv_heads * hd, q_width = heads * hd, group = heads / kv_heads;
  KvCache& cache = caches_.at(node.int_attr("layer"));
  const float* q = buffers_[static_cast<size_t>(node.inputs[0])].data();
  const float* k = buffers_[static_cast<size_t>(node.inputs[1])].data();
  const float* v = buffers_[static_cast<size_t>(node.inputs[2])].data();
  std::transform(k, k + rows * kv_width, cache.keys.data() + position_ * kv_width,
                 [&](float e) { return round_to_format(e, kv_); });
  std::transform(v, v + rows * kv_width, cache.values.data() + position_ * kv_width,
                 [&](float e) { return round_to_format(e, kv_); });
  float* out = buffers_[id].data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t total = rows * heads;
  const int64_t context = position_ + rows;
  const bool causal = ir::is_causal(node);
#pragma omp parallel if (total > 1 && context * total > 4096)
  {
    std::vector<float> scores(static_cast<size_t>(context));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < total; ++task) {
      const int64_t r = task / heads, h = task % heads, g = h / group;
      // Causal: keys at positions <= this query's; else every key cached so far.
      const int64_t visible = causal ? position_ + r + 1 : context;
      const float* qh = q + r * q_width + h * hd;
      float max_score = -INFINITY;
      for (int64_t j = 0; j < visible; ++j) {
        scores[static_cast<size_t>(j)] = kernels::dot(qh, cache.keys.data() + j * kv_width + g * hd, hd) * scale;
        max_score = std::max(max_score, scores[static_cast<size_t>(j)]);
      }
      if (position_block_ > 0) {
        blocked_softmax_values(scores.data(), visible, cache.values.data() + g * hd, kv_width, hd,
                               out + r * q_width + h * hd);
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < visible; ++j) {
        scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max_score);
        sum += scores[static_cast<size_t>(j)];
      }
      const auto inv = static_cast<float>(1.0 / sum);
      float* oh = out + r * q_width + h * hd;
      std::fill_n(oh, hd, 0.0f);
      for (int64_t j = 0; j < visible; ++j) {
        const float w = scores[static_cast<size_t>(j)] * inv;
        const float* vj = cache.values.data() + j * kv_width + g * hd;
        for (int64_t d = 0; d < hd; ++d) oh[d] += w * vj[d];
      }
    }
  }
}

}  // namespace tessera::ref
