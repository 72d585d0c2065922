#include "tessera/target/partitioning.hpp"

#include <map>

#include "tessera/base/error.hpp"

namespace tessera::sim {

namespace {

// A plan's matrix (a fused one included) -> the graph weights it stands for, with their k.
class WeightNames {
 public:
  explicit WeightNames(const ir::Graph& graph) {
    for (const ir::Node& node : graph.nodes())
      if (node.op == ir::OpKind::MatMul || node.op == ir::OpKind::Linear) {
        const ir::Node& w = graph.node(node.inputs[1]);
        k_[w.name] = node.op == ir::OpKind::Linear ? w.type.shape.dims[1] : w.type.shape.dims[0];
      }
    const ir::Node& head = graph.node(graph.outputs().front());
    head_ = graph.node(head.inputs[1]).name;
  }

  std::vector<std::string> weights(const std::string& matrix) const {
    if (matrix == "lm_head") return {head_};
    std::vector<std::string> out;
    const auto fused = [&](const std::string& suffix, std::initializer_list<const char*> parts) {
      if (!matrix.ends_with(suffix)) return false;
      for (const char* part : parts) out.push_back(matrix.substr(0, matrix.size() - suffix.size()) + part + ".weight");
      return true;
    };
    if (!fused("qkv_proj", {"q_proj", "k_proj", "v_proj"}) && !fused("gate_up_proj", {"gate_proj", "up_proj"}))
      out.push_back(matrix + ".weight");
    for (const auto& w : out)
      if (!k_.contains(w)) fail("the plan's matrix '{}' has no weight '{}' in the model graph", matrix, w);
    return out;
  }

  int64_t k(const std::string& weight) const { return k_.at(weight); }

 private:
  std::map<std::string, int64_t> k_;
  std::string head_;
};

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

ref::Partitioning partitioning(const program::BspPlan& plan, const ir::Graph& graph) {
  const WeightNames names(graph);
  ref::Partitioning p;
  int64_t position_parts = 1;
  for (const auto& st : plan.decode) {
    if (st.op == "matmul" && st.k_parts > 1) {
      const std::string matrix = st.name.starts_with("lm_head") ? "lm_head" : st.name;
      for (const auto& w : names.weights(matrix)) p.k_parts[w] = st.k_parts;
    }
    if (st.op == "attention") position_parts = std::max(position_parts, st.position_parts);
  }
  // Each tile of a pair holds a contiguous block of the context's positions.
  if (position_parts > 1) p.position_block = cdiv(plan.prompt_tokens + plan.max_new_tokens, position_parts);
  return p;
}

ref::Partitioning partitioning(const program::GpuPlan& plan, const ir::Graph& graph) {
  const WeightNames names(graph);
  ref::Partitioning p;
  for (const auto* phase : {&plan.prefill, &plan.decode})
    for (const auto& kern : *phase) {
      if (kern.op != "gemm" || kern.tile_k <= 0) continue;
      for (const auto& w : names.weights(kern.name.ends_with("lm_head") ? "lm_head" : kern.name)) {
        // Split-K parts on one GPU, times the GPUs whose partial sums the allreduce adds (row-split).
        const int64_t parts = cdiv(kern.k, kern.tile_k) * (names.k(w) / kern.k);
        (phase == &plan.prefill ? p.k_parts : p.k_parts_decode)[w] = parts;  // 1s too: decode differs
      }
    }
  p.position_block = kFlashAttentionKeyBlock;
  return p;
}

}  // namespace tessera::sim
