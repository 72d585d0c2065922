#include <fmt/core.h>

#include "tessera/ir/graph.hpp"

namespace tessera::ir {

const std::vector<OpInfo>& op_table() {
  static const std::vector<OpInfo> table = {
      {OpKind::Input, "input", 0, 0, {}},
      {OpKind::Param, "param", 0, 0, {}},
      {OpKind::Embedding, "embedding", 2, 2, {}},
      {OpKind::Add, "add", 2, 2, {}},
      {OpKind::Mul, "mul", 2, 2, {}},
      {OpKind::LayerNorm, "layernorm", 3, 3, {"eps"}},
      {OpKind::RmsNorm, "rmsnorm", 2, 2, {"eps"}},
      {OpKind::MatMul, "matmul", 2, 3, {}},
      {OpKind::Linear, "linear", 2, 3, {}},
      {OpKind::Gelu, "gelu", 1, 1, {}},
      {OpKind::Silu, "silu", 1, 1, {}},
      {OpKind::SliceCols, "slice_cols", 1, 1, {"start", "size"}},
      {OpKind::Rope, "rope", 2, 2, {"n_heads", "head_dim", "theta"}},
      {OpKind::Attention, "attention", 3, 3, {"n_heads", "n_kv_heads", "head_dim", "layer"}},
      {OpKind::MoeExperts, "moe_experts", 5, 2 + 3 * kMaxExperts, {"n_experts", "top_k"}},
      {OpKind::CrossEntropy, "cross_entropy", 2, 2, {}, true},
      {OpKind::CrossEntropyGrad, "cross_entropy_grad", 3, 3, {}, true},
      {OpKind::WeightGrad, "weight_grad", 2, 2, {}, true},
      {OpKind::SumRows, "sum_rows", 1, 1, {}, true},
      {OpKind::EmbeddingGrad, "embedding_grad", 2, 2, {"rows"}, true},
      {OpKind::LayerNormGrad, "layernorm_grad", 3, 3, {"eps"}, true},
      {OpKind::RmsNormGrad, "rmsnorm_grad", 3, 3, {"eps"}, true},
      {OpKind::NormScaleGrad, "norm_scale_grad", 2, 2, {"eps", "centered"}, true},
      {OpKind::GeluGrad, "gelu_grad", 2, 2, {}, true},
      {OpKind::SiluGrad, "silu_grad", 2, 2, {}, true},
      {OpKind::ConcatCols, "concat_cols", 1, 64, {}, true},
      {OpKind::RopeGrad, "rope_grad", 2, 2, {"n_heads", "head_dim", "theta"}, true},
      {OpKind::AttentionGrad,
       "attention_grad",
       5,
       5,
       {"n_heads", "n_kv_heads", "head_dim", "layer", "recompute"},
       true},
      {OpKind::GradNormScale, "grad_norm_scale", 1, 1 << 20, {"max_norm"}, true},
      {OpKind::AdamW, "adamw", 4, 5, {"beta1", "beta2", "eps", "weight_decay"}, true},
      {OpKind::SgdMomentum, "sgd_momentum", 3, 4, {"momentum", "weight_decay"}, true},
  };
  return table;
}

const OpInfo& op_info(OpKind kind) {
  const auto& table = op_table();
  const auto index = static_cast<size_t>(kind);
  TESSERA_ASSERT(index < table.size() && table[index].kind == kind);
  return table[index];
}

namespace {

std::string type_str(const TensorType& t) { return fmt::format("{}{}", dtype_name(t.dtype), t.shape.str()); }

bool is_matrix(const TensorType& t) { return t.dtype == DType::F32 && t.shape.rank() == 2; }
bool is_vector(const TensorType& t, int64_t n) { return t.dtype == DType::F32 && t.shape == Shape{{n}}; }
bool is_seq_ids(const TensorType& t) { return t.dtype == DType::I32 && t.shape == Shape{{kSeq}}; }
bool is_scalar(const TensorType& t, DType dtype = DType::F32) { return t.dtype == dtype && t.shape == Shape{{1}}; }
bool is_rows(const TensorType& t) { return is_matrix(t) && t.shape.dims[0] == kSeq; }

}  // namespace

Status infer_type(const Graph& graph, Node& node) {
  const OpInfo& info = op_info(node.op);
  const int n_inputs = static_cast<int>(node.inputs.size());
  if (n_inputs < info.min_inputs || n_inputs > info.max_inputs)
    return Status::failure("{} '{}': takes {}..{} inputs, got {}", info.name, node.name, info.min_inputs,
                           info.max_inputs, n_inputs);
  for (const char* key : info.required_attrs)
    if (!node.attrs.contains(key)) return Status::failure("{} '{}': missing attribute '{}'", info.name, node.name, key);
  std::vector<TensorType> in;
  for (int id : node.inputs) in.push_back(graph.node(id).type);
  auto bad = [&](const char* rule) {
    std::string types;
    for (const auto& t : in) types += (types.empty() ? "" : ", ") + type_str(t);
    return Status::failure("{} '{}': {} (inputs: {})", info.name, node.name, rule, types);
  };
  TensorType out{DType::F32, {}};
  switch (node.op) {
    case OpKind::Input:
    case OpKind::Param:
      return Status::ok();
    case OpKind::Embedding:
      if (!is_matrix(in[0]) || !is_seq_ids(in[1])) return bad("needs table f32[V,D] and ids i32[seq]");
      out.shape = Shape{{kSeq, in[0].shape.dims[1]}};
      break;
    case OpKind::Add:
    case OpKind::Mul:
      if (in[0].dtype != DType::F32 || !(in[0].shape == in[1].shape)) return bad("needs two equal f32 shapes");
      out = in[0];
      break;
    case OpKind::LayerNorm:
    case OpKind::RmsNorm: {
      if (!is_matrix(in[0])) return bad("needs x f32[seq,D]");
      const int64_t d = in[0].shape.dims[1];
      for (int i = 1; i < n_inputs; ++i)
        if (!is_vector(in[static_cast<size_t>(i)], d)) return bad("scale/shift must be f32[D]");
      if (node.float_attr("eps") <= 0) return bad("eps must be > 0");
      out = in[0];
      break;
    }
    case OpKind::MatMul:
    case OpKind::Linear: {
      if (!is_matrix(in[0]) || !is_matrix(in[1])) return bad("needs x f32[seq,K] and a weight matrix");
      const auto& w = in[1].shape.dims;
      const int64_t k = node.op == OpKind::MatMul ? w[0] : w[1];
      const int64_t n = node.op == OpKind::MatMul ? w[1] : w[0];
      if (in[0].shape.dims[1] != k) return bad("inner dimensions differ");
      if (n_inputs == 3 && !is_vector(in[2], n)) return bad("bias must be f32[N]");
      out.shape = Shape{{in[0].shape.dims[0], n}};
      break;
    }
    case OpKind::Gelu:
    case OpKind::Silu:
      if (in[0].dtype != DType::F32) return bad("needs f32");
      out = in[0];
      break;
    case OpKind::SliceCols: {
      if (!is_matrix(in[0])) return bad("needs f32[seq,N]");
      const int64_t start = node.int_attr("start"), size = node.int_attr("size");
      if (start < 0 || size <= 0 || start + size > in[0].shape.dims[1]) return bad("slice out of range");
      out.shape = Shape{{in[0].shape.dims[0], size}};
      break;
    }
    case OpKind::Rope: {
      const int64_t width = node.int_attr("n_heads") * node.int_attr("head_dim");
      if (!is_matrix(in[0]) || in[0].shape.dims[1] != width || !is_seq_ids(in[1]))
        return bad("needs x f32[seq,n_heads*head_dim] and positions i32[seq]");
      if (node.int_attr("head_dim") % 2 != 0) return bad("head_dim must be even");
      out = in[0];
      break;
    }
    case OpKind::Attention: {
      const int64_t hd = node.int_attr("head_dim"), h = node.int_attr("n_heads"), kv = node.int_attr("n_kv_heads");
      if (kv <= 0 || h % kv != 0) return bad("n_heads must be a multiple of n_kv_heads");
      if (!is_matrix(in[0]) || in[0].shape.dims[1] != h * hd) return bad("q must be f32[seq,n_heads*head_dim]");
      for (int i = 1; i < 3; ++i)
        if (!is_matrix(in[static_cast<size_t>(i)]) || in[static_cast<size_t>(i)].shape.dims[1] != kv * hd)
          return bad("k and v must be f32[seq,n_kv_heads*head_dim]");
      out = in[0];
      break;
    }
    case OpKind::MoeExperts: {
      const int64_t experts = node.int_attr("n_experts"), top_k = node.int_attr("top_k");
      if (experts < 1 || experts > kMaxExperts || n_inputs != 2 + 3 * experts)
        return bad("needs x, router logits and three weights per expert (1..256 experts)");
      if (top_k < 1 || top_k > experts) return bad("top_k must be 1..n_experts");
      if (!is_matrix(in[0]) || !is_matrix(in[1]) || in[1].shape.dims[1] != experts)
        return bad("needs x f32[seq,D] and router logits f32[seq,n_experts]");
      const int64_t d = in[0].shape.dims[1], f = in[2].shape.rank() == 2 ? in[2].shape.dims[0] : 0;
      for (int64_t e = 0; e < experts; ++e) {
        const auto &w1 = in[static_cast<size_t>(2 + 3 * e)].shape, &w3 = in[static_cast<size_t>(3 + 3 * e)].shape,
                   &w2 = in[static_cast<size_t>(4 + 3 * e)].shape;
        if (!(w1 == Shape{{f, d}}) || !(w3 == Shape{{f, d}}) || !(w2 == Shape{{d, f}}))
          return bad("each expert needs w1 and w3 f32[F,D] and w2 f32[D,F]");
      }
      out = in[0];
      break;
    }
    case OpKind::CrossEntropy:
    case OpKind::CrossEntropyGrad:
      if (!is_rows(in[0]) || !is_seq_ids(in[1])) return bad("needs logits f32[seq,V] and targets i32[seq]");
      if (node.op == OpKind::CrossEntropyGrad && !is_scalar(in[2])) return bad("scale must be f32[1]");
      out.shape = node.op == OpKind::CrossEntropy ? Shape{{1}} : in[0].shape;
      break;
    case OpKind::WeightGrad:
      if (!is_rows(in[0]) || !is_rows(in[1])) return bad("needs a[seq,M] and b[seq,N]");
      out.shape = Shape{{in[0].shape.dims[1], in[1].shape.dims[1]}};
      break;
    case OpKind::SumRows:
      if (!is_rows(in[0])) return bad("needs x f32[seq,N]");
      out.shape = Shape{{in[0].shape.dims[1]}};
      break;
    case OpKind::EmbeddingGrad:
      if (!is_rows(in[0]) || !is_seq_ids(in[1])) return bad("needs dy f32[seq,D] and ids i32[seq]");
      if (node.int_attr("rows") <= 0) return bad("rows must be > 0");
      out.shape = Shape{{node.int_attr("rows"), in[0].shape.dims[1]}};
      break;
    case OpKind::LayerNormGrad:
    case OpKind::RmsNormGrad:
      if (!is_rows(in[0]) || !is_vector(in[1], in[0].shape.dims[1]) || !(in[2].shape == in[0].shape))
        return bad("needs x f32[seq,D], gamma f32[D] and dy like x");
      out = in[0];
      break;
    case OpKind::NormScaleGrad:
      if (!is_rows(in[0]) || !(in[1].shape == in[0].shape)) return bad("needs x f32[seq,D] and dy like x");
      out.shape = Shape{{in[0].shape.dims[1]}};
      break;
    case OpKind::GeluGrad:
    case OpKind::SiluGrad:
      if (in[0].dtype != DType::F32 || !(in[0].shape == in[1].shape)) return bad("needs x and dy of one f32 shape");
      out = in[0];
      break;
    case OpKind::ConcatCols: {
      int64_t cols = 0;
      for (const auto& t : in) {
        if (!is_rows(t)) return bad("needs f32[seq,N] inputs");
        cols += t.shape.dims[1];
      }
      out.shape = Shape{{kSeq, cols}};
      break;
    }
    case OpKind::RopeGrad: {
      const int64_t width = node.int_attr("n_heads") * node.int_attr("head_dim");
      if (!is_rows(in[0]) || in[0].shape.dims[1] != width || !is_seq_ids(in[1]))
        return bad("needs dy f32[seq,n_heads*head_dim] and positions i32[seq]");
      out = in[0];
      break;
    }
    case OpKind::AttentionGrad: {
      const int64_t hd = node.int_attr("head_dim"), h = node.int_attr("n_heads"), kv = node.int_attr("n_kv_heads");
      if (kv <= 0 || h % kv != 0) return bad("n_heads must be a multiple of n_kv_heads");
      const int64_t widths[] = {h * hd, kv * hd, kv * hd, h * hd, h * hd};
      for (size_t i = 0; i < 5; ++i)
        if (!is_rows(in[i]) || in[i].shape.dims[1] != widths[i]) return bad("needs q, k, v, out and dy as Attention's");
      out.shape = Shape{{kSeq, (h + 2 * kv) * hd}};
      break;
    }
    case OpKind::GradNormScale:
      for (const auto& t : in)
        if (t.dtype != DType::F32) return bad("needs f32 gradients");
      if (node.float_attr("max_norm") <= 0) return bad("max_norm must be > 0");
      out.shape = Shape{{1}};
      break;
    case OpKind::AdamW:
    case OpKind::SgdMomentum: {
      const bool adam = node.op == OpKind::AdamW;
      if (in[0].dtype != DType::F32 || !(in[0].shape == in[1].shape)) return bad("needs param and grad of one shape");
      if (!is_scalar(in[2])) return bad("lr must be f32[1]");
      if (adam && !is_scalar(in[3], DType::I32)) return bad("step must be i32[1]");
      const size_t clip = adam ? 4 : 3;
      if (in.size() > clip && !is_scalar(in[clip])) return bad("clip scale must be f32[1]");
      out = in[0];
      break;
    }
  }
  node.type = out;
  return Status::ok();
}

}  // namespace tessera::ir
