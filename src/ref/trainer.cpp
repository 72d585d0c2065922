#include "tessera/ref/trainer.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "tessera/ref/executor.hpp"
#include "tessera/ref/kernels.hpp"

namespace tessera::ref {

using ir::OpKind;

Trainer::Trainer(const ir::TrainingGraph& training, const model::Weights& initial, MixedPrecision precision,
                 const Partitioning& partitioning)
    : t_(training), precision_(precision) {
  const ir::Graph& g = t_.graph;
  if (const Status s = g.verify(); !s) fail("cannot train with an invalid graph: {}", s.message());
  if (precision.compute != FloatFormat::F32 && precision.compute != FloatFormat::BF16 &&
      precision.compute != FloatFormat::F16)
    fail("mixed-precision training computes in bf16 or fp16, not {}", float_format_name(precision.compute));
  if (precision.loss_scaling && !(precision.initial_loss_scale > 0 && precision.growth_interval > 0))
    fail("loss scaling needs a positive initial scale and growth interval");
  loss_scale_ = precision.loss_scaling ? precision.initial_loss_scale : 1.0;
  const size_t n = g.nodes().size();
  rounded_of_node_.assign(n, nullptr);
  param_of_node_.assign(n, nullptr);
  buffers_.resize(n);
  int_buffers_.resize(n);
  state_a_.resize(n);
  state_b_.resize(n);
  for (size_t id = 0; id < n; ++id) {
    const ir::Node& node = g.node(static_cast<int>(id));
    if (node.op != OpKind::Param) continue;
    const model::Tensor* tensor = initial.find(node.name);
    if (!tensor) fail("no initial value for parameter '{}'", node.name);
    if (tensor->shape != node.type.shape.dims)
      fail("initial value of '{}' has shape {} but the graph needs {}", node.name, ir::Shape{tensor->shape}.str(),
           node.type.shape.str());
    auto& storage = params_[node.name];
    storage = tensor->values;
    param_of_node_[id] = storage.data();
  }
  // Each matrix product by a weight: forward (and recomputed) ones split k, the input gradient's
  // its n outputs.
  reduction_parts_.assign(n, 1);
  std::map<std::string, int> uses;
  for (size_t id = 0; id < n; ++id) {
    const ir::Node& node = g.node(static_cast<int>(id));
    if (node.op != OpKind::MatMul && node.op != OpKind::Linear) continue;
    const ir::Node& weight = g.node(node.inputs[1]);
    if (weight.op != OpKind::Param) continue;
    const auto& parts = node.phase == ir::Phase::Backward ? partitioning.backward_parts : partitioning.k_parts;
    if (const auto it = parts.find(weight.name); it != parts.end()) {
      if (it->second < 1) fail("partitioning: '{}' split into {} parts", weight.name, it->second);
      reduction_parts_[id] = it->second;
    }
    ++uses[weight.name];
  }
  for (const auto* parts : {&partitioning.k_parts, &partitioning.backward_parts})
    for (const auto& [weight, count] : *parts)
      if (!uses.contains(weight))
        fail("partitioning: '{}' is not a weight any matrix product of the graph reads", weight);
}

const float* Trainer::data(int node) const {
  const auto i = static_cast<size_t>(node);
  if (rounded_of_node_[i]) return rounded_of_node_[i];
  return param_of_node_[i] ? param_of_node_[i] : buffers_[i].data();
}

void Trainer::set_loss_scale(double scale, int64_t steps_at_scale) {
  if (!(scale > 0) || !std::isfinite(scale) || steps_at_scale < 0)
    fail("a loss scale of {} after {} steps is not a state loss scaling reaches", scale, steps_at_scale);
  loss_scale_ = scale, steps_at_scale_ = steps_at_scale;
}

namespace {

bool matrix_op(OpKind op) {
  return op == OpKind::MatMul || op == OpKind::Linear || op == OpKind::WeightGrad || op == OpKind::Attention ||
         op == OpKind::AttentionGrad;
}

}  // namespace

void Trainer::round_operands(const ir::Node& node) {
  rounded_.resize(node.inputs.size());
  for (size_t k = 0; k < node.inputs.size(); ++k) {
    const auto in = static_cast<size_t>(node.inputs[k]);
    const auto count = static_cast<size_t>(t_.graph.node(node.inputs[k]).type.shape.elements(rows_));
    const float* x = data(node.inputs[k]);
    auto& copy = rounded_[k];
    copy.resize(count);
    if (precision_.compute == FloatFormat::BF16)
      for (size_t e = 0; e < count; ++e) copy[e] = round_to_bf16(x[e]);
    else
      for (size_t e = 0; e < count; ++e) copy[e] = round_to_fp16(x[e]);
    rounded_of_node_[in] = copy.data();
  }
}

float* Trainer::mutable_data(size_t node) {
  return param_of_node_[node] ? param_of_node_[node] : buffers_[node].data();
}

void Trainer::bind(const Batch& batch) {
  const auto rows = static_cast<int64_t>(batch.inputs.size());
  if (batch.sequences < 1 || rows == 0 || rows % batch.sequences != 0)
    fail("a batch of {} tokens does not split into {} sequences of one length", rows, batch.sequences);
  if (batch.targets.size() != batch.inputs.size())
    fail("a batch has {} inputs but {} targets", batch.inputs.size(), batch.targets.size());
  rows_ = rows, length_ = rows / batch.sequences;
  const ir::Graph& g = t_.graph;
  auto set_ints = [&](const char* name, auto&& fill) {
    if (const int id = g.find_input(name); id >= 0) fill(int_buffers_[static_cast<size_t>(id)]);
  };
  set_ints("tokens", [&](auto& v) { v.assign(batch.inputs.begin(), batch.inputs.end()); });
  set_ints("targets", [&](auto& v) { v.assign(batch.targets.begin(), batch.targets.end()); });
  set_ints("token_types", [&](auto& v) { v.assign(static_cast<size_t>(rows), 0); });  // one segment
  set_ints("positions", [&](auto& v) {
    v.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) v[static_cast<size_t>(r)] = static_cast<int32_t>(r % length_);
  });
  const int64_t vocab = g.node(t_.logits).type.shape.dims.back();
  int64_t counted = 0;
  for (int32_t target : batch.targets) {
    if (target == ir::kIgnoredTarget) continue;
    if (target < 0 || target >= vocab) fail("target token {} is outside the vocabulary of {} tokens", target, vocab);
    ++counted;
  }
  if (counted == 0) fail("a batch of {} tokens has no target a loss counts (all are {})", rows, ir::kIgnoredTarget);
  counted_rows_ = counted;
  for (size_t id = 0; id < g.nodes().size(); ++id) {
    const ir::Node& node = g.node(static_cast<int>(id));
    if (node.op == OpKind::Rope || node.op == OpKind::RopeGrad) {
      auto& table = rope_tables_[id];
      const auto half = static_cast<size_t>(node.int_attr("head_dim") / 2);
      if (table.first.size() < static_cast<size_t>(length_) * half) {
        RopeTable fresh = rope_table(node, length_);
        table = {std::move(fresh.cos), std::move(fresh.sin)};
      }
    }
  }
}

void Trainer::run(int begin, int end) {
  for (int id = begin; id < end; ++id) run_node(static_cast<size_t>(id));
}

namespace {

void scalar_input(std::vector<float>& buffer, double value) { buffer.assign(1, static_cast<float>(value)); }

}  // namespace

double Trainer::compute_gradients(const Batch& batch) {
  bind(batch);
  scalar_input(buffers_[static_cast<size_t>(t_.graph.find_input("loss_scale"))], 1.0);
  run(0, t_.optimizer_begin);
  return buffers_[static_cast<size_t>(t_.loss)][0];
}

double Trainer::loss(const Batch& batch) {
  bind(batch);
  run(0, t_.loss + 1);
  return buffers_[static_cast<size_t>(t_.loss)][0];
}

StepResult Trainer::step(std::span<const Batch> micro_batches, double learning_rate) {
  if (micro_batches.empty()) fail("a training step needs at least one micro-batch");
  const ir::Graph& g = t_.graph;
  StepResult result;
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    bind(micro_batches[m]);
    scalar_input(buffers_[static_cast<size_t>(g.find_input("loss_scale"))],
                 loss_scale_ / static_cast<double>(micro_batches.size()));
    run(0, t_.optimizer_begin);
    result.loss += buffers_[static_cast<size_t>(t_.loss)][0] / static_cast<double>(micro_batches.size());
    for (const auto& [name, node] : t_.gradients) {
      const auto& grad = buffers_[static_cast<size_t>(node)];
      auto& sum = accumulated_[name];
      if (m == 0) {
        sum = grad;
      } else {
        for (size_t e = 0; e < sum.size(); ++e) sum[e] += grad[e];
      }
    }
  }
  result.loss_scale = loss_scale_;
  if (precision_.loss_scaling) {
    // An overflowed gradient skips the step and halves the scale; otherwise the gradients are
    // unscaled (x 1 / scale in fp32, as GradScaler does) before clipping and the update.
    bool finite = true;
    for (const auto& [name, sum] : accumulated_)
      for (float v : sum) finite = finite && std::isfinite(v);
    if (!finite) {
      result.skipped = true;
      loss_scale_ /= 2, steps_at_scale_ = 0;
      return result;
    }
    const auto inverse = static_cast<float>(1.0 / loss_scale_);
    for (auto& [name, sum] : accumulated_)
      for (float& v : sum) v *= inverse;
    if (++steps_at_scale_ == precision_.growth_interval) loss_scale_ *= 2, steps_at_scale_ = 0;
  }
  double squares = 0;
  for (auto& [name, sum] : accumulated_) {
    for (float v : sum) squares += static_cast<double>(v) * v;
    buffers_[static_cast<size_t>(t_.gradients.at(name))].swap(sum);
  }
  result.gradient_norm = std::sqrt(squares);
  scalar_input(buffers_[static_cast<size_t>(g.find_input("learning_rate"))], learning_rate);
  int_buffers_[static_cast<size_t>(g.find_input("step"))].assign(1, static_cast<int32_t>(steps_ + 1));
  run(t_.optimizer_begin, static_cast<int>(g.nodes().size()));
  ++steps_;
  return result;
}

std::span<const float> Trainer::gradient(const std::string& parameter) const {
  const auto it = t_.gradients.find(parameter);
  if (it == t_.gradients.end()) fail("'{}' is not a trained parameter", parameter);
  return buffers_[static_cast<size_t>(it->second)];
}

model::Weights Trainer::weights() const {
  model::Weights out;
  for (const auto& name : t_.parameters) {
    const ir::Node& node = t_.graph.node(t_.graph.find_param(name));
    out.insert(name, model::Tensor{node.type.shape.dims, params_.at(name)});
  }
  return out;
}

model::Weights Trainer::optimizer_state() const {
  model::Weights out;
  const bool adam = t_.options.optimizer.kind == ir::OptimizerKind::AdamW;
  for (const auto& [name, node] : t_.updates) {
    const auto i = static_cast<size_t>(node);
    if (state_a_[i].empty()) continue;  // no step taken yet
    const auto& shape = t_.graph.node(node).type.shape.dims;
    out.insert(name + (adam ? ".m" : ".momentum"), model::Tensor{shape, state_a_[i]});
    if (adam) out.insert(name + ".v", model::Tensor{shape, state_b_[i]});
  }
  return out;
}

void Trainer::load_optimizer_state(const model::Weights& state, int64_t steps_done) {
  if (steps_done < 0) fail("a checkpoint's step count {} is negative", steps_done);
  const bool adam = t_.options.optimizer.kind == ir::OptimizerKind::AdamW;
  for (const auto& [name, node] : t_.updates) {
    const auto i = static_cast<size_t>(node);
    const auto& shape = t_.graph.node(node).type.shape.dims;
    auto take = [&](const std::string& key, std::vector<float>& into) {
      const model::Tensor* tensor = state.find(key);
      if (!tensor) {
        if (steps_done == 0) return into.clear();
        fail("optimizer state has no tensor '{}' (a checkpoint of another optimizer or model?)", key);
      }
      if (tensor->shape != shape)
        fail("optimizer state '{}' has shape {} but the parameter is {}", key, ir::Shape{tensor->shape}.str(),
             ir::Shape{shape}.str());
      into = tensor->values;
    };
    take(name + (adam ? ".m" : ".momentum"), state_a_[i]);
    if (adam) take(name + ".v", state_b_[i]);
  }
  steps_ = steps_done;
}

void Trainer::run_node(size_t id) {
  const ir::Node& node = t_.graph.node(static_cast<int>(id));
  if (node.op == OpKind::Input || node.op == OpKind::Param) return;
  auto in = [&](size_t k) { return data(node.inputs[k]); };
  auto ints = [&](size_t k) -> const std::vector<int32_t>& {
    return int_buffers_[static_cast<size_t>(node.inputs[k])];
  };
  auto cols_of = [&](size_t k) { return t_.graph.node(node.inputs[k]).type.shape.dims.back(); };
  if (node.op == OpKind::AdamW || node.op == OpKind::SgdMomentum) return optimizer_update(node, id);
  auto& out = buffers_[id];
  out.resize(static_cast<size_t>(node.type.shape.elements(rows_)));
  const int64_t cols = node.type.shape.dims.back();
  const auto count = static_cast<int64_t>(out.size());
  const bool rounded = precision_.compute != FloatFormat::F32 && matrix_op(node.op);
  if (rounded) round_operands(node);
  switch (node.op) {
    case OpKind::Embedding:
    case OpKind::EmbeddingGrad: {
      const bool grad = node.op == OpKind::EmbeddingGrad;
      const int64_t table_rows = grad ? node.int_attr("rows") : t_.graph.node(node.inputs[0]).type.shape.dims[0];
      const auto& ids = ints(1);
      if (grad) std::fill(out.begin(), out.end(), 0.0f);
      for (int64_t r = 0; r < rows_; ++r) {
        const int64_t t = ids[static_cast<size_t>(r)];
        if (t < 0 || t >= table_rows)
          fail(
              "{}: index {} is outside the table of {} rows (token id out of vocabulary, or a sequence longer than "
              "the context)",
              node.name, t, table_rows);
        if (grad) {
          const float* dy = in(0) + r * cols;
          float* row = out.data() + t * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] += dy[c];
        } else {
          std::copy_n(in(0) + t * cols, cols, out.data() + r * cols);
        }
      }
      break;
    }
    case OpKind::Add: {
      const float *a = in(0), *b = in(1);
      for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = a[i] + b[i];
      break;
    }
    case OpKind::Mul: {
      const float *a = in(0), *b = in(1);
      for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = a[i] * b[i];
      break;
    }
    case OpKind::LayerNorm:
    case OpKind::RmsNorm:
      kernels::norm(in(0), in(1), node.op == OpKind::LayerNorm ? in(2) : nullptr, node.float_attr("eps"), rows_, cols,
                    out.data());
      break;
    case OpKind::LayerNormGrad:
    case OpKind::RmsNormGrad:
      kernels::norm_grad(in(0), in(1), in(2), node.op == OpKind::LayerNormGrad, node.float_attr("eps"), rows_, cols,
                         out.data());
      break;
    case OpKind::NormScaleGrad:
      kernels::norm_scale_grad(in(0), in(1), node.int_attr("centered") != 0, node.float_attr("eps"), rows_, cols,
                               out.data());
      break;
    case OpKind::MatMul:
    case OpKind::Linear: {
      const bool linear = node.op == OpKind::Linear;
      const int64_t k = cols_of(0);
      const auto n = static_cast<blasint>(cols), kk = static_cast<blasint>(k);
      if (const int64_t parts = reduction_parts_[id]; parts > 1) {
        // The machine's partial sums added in part order, the bias last.
        kernels::split_k_matmul(in(0), k, in(1), linear, rows_, k, cols, parts, out.data(), partial_);
        if (node.inputs.size() == 3)
          for (int64_t r = 0; r < rows_; ++r)
            for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(r * cols + c)] += in(2)[c];
        break;
      }
      float beta = 0.0f;
      if (node.inputs.size() == 3) {
        for (int64_t r = 0; r < rows_; ++r) std::copy_n(in(2), cols, out.data() + r * cols);
        beta = 1.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, linear ? CblasTrans : CblasNoTrans, static_cast<blasint>(rows_), n, kk,
                  1.0f, in(0), kk, in(1), linear ? kk : n, beta, out.data(), n);
      break;
    }
    case OpKind::WeightGrad: {
      const auto m = static_cast<blasint>(cols_of(0)), n = static_cast<blasint>(cols_of(1));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, static_cast<blasint>(rows_), 1.0f, in(0), m, in(1), n,
                  0.0f, out.data(), n);
      break;
    }
    case OpKind::SumRows: {
      std::vector<double> sums(static_cast<size_t>(cols), 0.0);
      const float* x = in(0);
      for (int64_t r = 0; r < rows_; ++r)
        for (int64_t c = 0; c < cols; ++c) sums[static_cast<size_t>(c)] += x[r * cols + c];
      for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(c)] = static_cast<float>(sums[static_cast<size_t>(c)]);
      break;
    }
    case OpKind::Gelu:
      (ir::is_exact_gelu(node) ? kernels::gelu_exact : kernels::gelu)(in(0), count, out.data());
      break;
    case OpKind::Silu:
      kernels::silu(in(0), count, out.data());
      break;
    case OpKind::GeluGrad:
      (ir::is_exact_gelu(node) ? kernels::gelu_exact_grad : kernels::gelu_grad)(in(0), in(1), count, out.data());
      break;
    case OpKind::SiluGrad:
      kernels::silu_grad(in(0), in(1), count, out.data());
      break;
    case OpKind::SliceCols: {
      const int64_t start = node.int_attr("start"), src_cols = cols_of(0);
      for (int64_t r = 0; r < rows_; ++r) std::copy_n(in(0) + r * src_cols + start, cols, out.data() + r * cols);
      break;
    }
    case OpKind::ConcatCols: {
      int64_t start = 0;
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        const int64_t part = cols_of(k);
        for (int64_t r = 0; r < rows_; ++r) std::copy_n(in(k) + r * part, part, out.data() + r * cols + start);
        start += part;
      }
      break;
    }
    case OpKind::Rope:
    case OpKind::RopeGrad: {
      const auto& [cos, sin] = rope_tables_.at(id);
      const auto& positions = ints(1);
      const int64_t hd = node.int_attr("head_dim"), half = hd / 2, heads = node.int_attr("n_heads");
      for (int64_t r = 0; r < rows_; ++r) {
        const int64_t p = positions[static_cast<size_t>(r)];
        for (int64_t h = 0; h < heads; ++h)
          kernels::rope_head(in(0) + (r * heads + h) * hd, cos.data() + p * half, sin.data() + p * half, hd,
                             node.op == OpKind::RopeGrad, out.data() + (r * heads + h) * hd);
      }
      break;
    }
    case OpKind::Attention:
      attention(node, id);
      break;
    case OpKind::AttentionGrad:
      attention_grad(node, id);
      break;
    case OpKind::CrossEntropy:
    case OpKind::CrossEntropyGrad: {
      const bool grad = node.op == OpKind::CrossEntropyGrad;
      const int64_t vocab = cols_of(0);
      const auto& targets = ints(1);
      const float scale = grad ? in(2)[0] / static_cast<float>(counted_rows_) : 0.0f;
      double total = 0;
      for (int64_t r = 0; r < rows_; ++r) {
        const int32_t target = targets[static_cast<size_t>(r)];
        if (target == ir::kIgnoredTarget) {
          if (grad) std::fill_n(out.data() + r * vocab, vocab, 0.0f);
          continue;
        }
        const float* logits = in(0) + r * vocab;
        const float max = *std::max_element(logits, logits + vocab);
        double sum = 0;
        for (int64_t v = 0; v < vocab; ++v) sum += kernels::fast_exp(logits[v] - max);
        const double lse = max + std::log(sum);
        total += lse - logits[target];
        if (!grad) continue;
        float* d = out.data() + r * vocab;
        const auto shift = static_cast<float>(lse);
        for (int64_t v = 0; v < vocab; ++v) d[v] = kernels::fast_exp(logits[v] - shift) * scale;
        d[target] -= scale;
      }
      if (!grad) out[0] = static_cast<float>(total / static_cast<double>(counted_rows_));
      break;
    }
    case OpKind::GradNormScale: {
      double squares = 0;
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        const float* g = in(k);
        const int64_t n = t_.graph.node(node.inputs[k]).type.shape.elements(rows_);
        for (int64_t e = 0; e < n; ++e) squares += static_cast<double>(g[e]) * g[e];
      }
      const auto norm = static_cast<float>(std::sqrt(squares));
      out[0] = std::min(1.0f, static_cast<float>(node.float_attr("max_norm")) / (norm + 1e-6f));
      break;
    }
    default:
      TESSERA_ASSERT(false);
  }
  if (rounded) {
    for (int input : node.inputs) rounded_of_node_[static_cast<size_t>(input)] = nullptr;
    for (float& v : out) v = precision_.compute == FloatFormat::BF16 ? round_to_bf16(v) : round_to_fp16(v);
  }
}

namespace {

// exp(q . k_j * scale - max) into p for the `count` keys k_j (`stride` apart); returns 1 / their sum,
// so p_j * the result is the softmax.
float softmax_scores(const float* q, const float* keys, int64_t stride, int64_t count, int64_t hd, float scale,
                     float* p) {
  float max = -INFINITY;
  for (int64_t j = 0; j < count; ++j) {
    p[j] = kernels::dot(q, keys + j * stride, hd) * scale;
    max = std::max(max, p[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j < count; ++j) sum += (p[j] = std::exp(p[j] - max));
  return static_cast<float>(1.0 / sum);
}

}  // namespace

// Attention within each sequence of the batch: query t of a sequence sees keys 0..t of it (causal),
// or all of it (an encoder).
void Trainer::attention(const ir::Node& node, size_t id) {
  const bool causal = ir::is_causal(node);
  const int64_t heads = node.int_attr("n_heads"), kv_heads = node.int_attr("n_kv_heads"),
                hd = node.int_attr("head_dim");
  const int64_t q_width = heads * hd, kv_width = kv_heads * hd, group = heads / kv_heads;
  const float *q = data(node.inputs[0]), *k = data(node.inputs[1]), *v = data(node.inputs[2]);
  float* out = buffers_[id].data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t sequences = rows_ / length_, tasks = sequences * heads, length = length_;
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> p(static_cast<size_t>(length));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t s = task / heads, h = task % heads, g = h / group, base = s * length;
      for (int64_t i = 0; i < length; ++i) {
        const float* qi = q + (base + i) * q_width + h * hd;
        const int64_t visible = causal ? i + 1 : length;
        const float inv = softmax_scores(qi, k + base * kv_width + g * hd, kv_width, visible, hd, scale, p.data());
        float* o = out + (base + i) * q_width + h * hd;
        std::fill_n(o, hd, 0.0f);
        for (int64_t j = 0; j < visible; ++j) {
          const float w = p[static_cast<size_t>(j)] * inv;
          const float* vj = v + (base + j) * kv_width + g * hd;
          for (int64_t d = 0; d < hd; ++d) o[d] += w * vj[d];
        }
      }
    }
  }
}

// dq, dk, dv of attention (causal or not), the probabilities recomputed from q and k. With P the softmax
// row, dP_j = dO . v_j, D = sum_j P_j dP_j: dS_j = P_j (dP_j - D), dq = scale sum_j dS_j k_j,
// dk_j += scale dS_j q, dv_j += P_j dO. One task per (sequence, KV head): its query heads' dk and
// dv updates land in rows no other task writes.
void Trainer::attention_grad(const ir::Node& node, size_t id) {
  const int64_t heads = node.int_attr("n_heads"), kv_heads = node.int_attr("n_kv_heads"),
                hd = node.int_attr("head_dim");
  const int64_t q_width = heads * hd, kv_width = kv_heads * hd, group = heads / kv_heads;
  const int64_t out_width = q_width + 2 * kv_width;
  const float *q = data(node.inputs[0]), *k = data(node.inputs[1]), *v = data(node.inputs[2]),
              *o = data(node.inputs[3]), *dout = data(node.inputs[4]);
  const bool causal = ir::is_causal(node);
  float* grads = buffers_[id].data();
  std::fill(buffers_[id].begin(), buffers_[id].end(), 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t sequences = rows_ / length_, tasks = sequences * kv_heads, length = length_;
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> p(static_cast<size_t>(length));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t s = task / kv_heads, g = task % kv_heads, base = s * length;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t i = 0; i < length; ++i) {
          const float* qi = q + (base + i) * q_width + h * hd;
          const float* doi = dout + (base + i) * q_width + h * hd;
          const int64_t visible = causal ? i + 1 : length;
          const float inv = softmax_scores(qi, k + base * kv_width + g * hd, kv_width, visible, hd, scale, p.data());
          const float d_sum = kernels::dot(doi, o + (base + i) * q_width + h * hd, hd);
          float* dqi = grads + (base + i) * out_width + h * hd;
          for (int64_t j = 0; j < visible; ++j) {
            const float pj = p[static_cast<size_t>(j)] * inv;
            const float* kj = k + (base + j) * kv_width + g * hd;
            const float* vj = v + (base + j) * kv_width + g * hd;
            const float ds = pj * (kernels::dot(doi, vj, hd) - d_sum) * scale;
            float* dkj = grads + (base + j) * out_width + q_width + g * hd;
            float* dvj = dkj + kv_width;
            for (int64_t d = 0; d < hd; ++d) {
              dqi[d] += ds * kj[d];
              dkj[d] += ds * qi[d];
              dvj[d] += pj * doi[d];
            }
          }
        }
      }
    }
  }
}

// PyTorch 1.13's single-tensor AdamW and SGD, operation for operation (scalars in double, rounded
// to fp32 where they meet a tensor); the gradient first scaled by the clip coefficient.
void Trainer::optimizer_update(const ir::Node& node, size_t id) {
  const bool adam = node.op == OpKind::AdamW;
  float* param = param_of_node_[static_cast<size_t>(node.inputs[0])];
  const float* grad = data(node.inputs[1]);
  const double lr = data(node.inputs[2])[0];
  const size_t clip_input = adam ? 4 : 3;
  const float clip = node.inputs.size() > clip_input ? data(node.inputs[clip_input])[0] : 1.0f;
  const double decay = node.float_attr("weight_decay");
  const auto n = static_cast<size_t>(node.type.shape.elements());
  auto& a = state_a_[id];
  if (adam) {
    auto& b = state_b_[id];
    const int64_t step = int_buffers_[static_cast<size_t>(node.inputs[3])][0];
    const double beta1 = node.float_attr("beta1"), beta2 = node.float_attr("beta2");
    if (a.empty()) a.assign(n, 0.0f), b.assign(n, 0.0f);
    const auto keep = static_cast<float>(1.0 - lr * decay);
    const auto b1 = static_cast<float>(beta1), one_minus_b1 = static_cast<float>(1.0 - beta1);
    const auto b2 = static_cast<float>(beta2), one_minus_b2 = static_cast<float>(1.0 - beta2);
    const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    const auto step_size = static_cast<float>(-(lr / bias1));
    const auto bias2_sqrt = static_cast<float>(std::sqrt(bias2));
    const auto eps = static_cast<float>(node.float_attr("eps"));
    for (size_t e = 0; e < n; ++e) {
      const float g = grad[e] * clip;
      if (decay != 0) param[e] *= keep;
      a[e] = a[e] * b1 + one_minus_b1 * g;
      b[e] = b[e] * b2 + one_minus_b2 * g * g;
      const float denom = std::sqrt(b[e]) / bias2_sqrt + eps;
      param[e] += step_size * a[e] / denom;
    }
  } else {
    const auto momentum = static_cast<float>(node.float_attr("momentum"));
    const bool first = a.empty();
    if (first) a.assign(n, 0.0f);
    const auto d = static_cast<float>(decay), neg_lr = static_cast<float>(-lr);
    for (size_t e = 0; e < n; ++e) {
      float g = grad[e] * clip;
      if (decay != 0) g = g + d * param[e];
      a[e] = first ? g : a[e] * momentum + g;
      param[e] += neg_lr * a[e];
    }
  }
}

}  // namespace tessera::ref
