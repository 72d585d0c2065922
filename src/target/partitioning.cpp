#include "tessera/target/partitioning.hpp"

#include <map>

#include "tessera/base/error.hpp"
#include "tessera/compiler/lowering.hpp"

namespace tessera::sim {

namespace {

// A plan's matrix (a fused one included) -> the graph weights it stands for, with their k.
class WeightNames {
 public:
  explicit WeightNames(const ir::Graph& graph) : lowered_(compiler::lower_graph(graph)) {}

  std::vector<std::string> weights(const std::string& matrix) const {
    const compiler::LoweredOp* op = lowered_.projection(matrix);
    if (!op) fail("the plan's matrix '{}' is no projection of the model graph", matrix);
    return op->weights;
  }

  int64_t k(const std::string& matrix) const { return lowered_.projection(matrix)->k; }
  const compiler::LoweredOp& projection(const std::string& matrix) const {
    weights(matrix);  // an unknown matrix throws
    return *lowered_.projection(matrix);
  }

 private:
  compiler::LoweredModel lowered_;
};

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

ref::Partitioning partitioning(const program::BspPlan& plan, const ir::Graph& graph) {
  const WeightNames names(graph);
  ref::Partitioning p;
  int64_t position_parts = 1;
  for (const auto& st : plan.decode) {
    if (st.op == "matmul" && st.k_parts > 1) {
      for (const auto& w : names.weights(st.name)) p.k_parts[w] = st.k_parts;
    }
    if (st.op == "attention") position_parts = std::max(position_parts, st.position_parts);
  }
  // Each tile of a pair holds a contiguous block of the context's positions.
  if (position_parts > 1) p.position_block = cdiv(plan.prompt_tokens + plan.max_new_tokens, position_parts);
  return p;
}

void add_training_split(ref::Partitioning& p, const compiler::LoweredOp& projection, int64_t k_parts,
                        int64_t n_blocks) {
  const int64_t block = cdiv(projection.n, std::max<int64_t>(1, n_blocks));
  // One weight holds every part (GPT-2's c_attn, sliced), or one weight per part (Llama's q|k|v).
  const bool one_weight = projection.weights.size() == 1;
  int64_t begin = 0;
  for (size_t i = 0; i < projection.weights.size(); ++i) {
    const int64_t end = begin + (one_weight ? projection.n : projection.part_widths.at(i));
    p.k_parts[projection.weights[i]] = std::min(k_parts, projection.k);
    p.backward_parts[projection.weights[i]] = (end - 1) / block - begin / block + 1;
    begin = end;
  }
}

ref::Partitioning training_partitioning(const program::BspPlan& plan, const ir::Graph& graph) {
  const WeightNames names(graph);
  ref::Partitioning p;
  for (const auto& st : plan.prefill)
    if (st.op == "matmul") add_training_split(p, names.projection(st.name), st.k_parts, st.tiles / st.k_parts);
  return p;
}

ref::Partitioning partitioning(const program::GpuPlan& plan, const ir::Graph& graph) {
  const WeightNames names(graph);
  ref::Partitioning p;
  for (const auto* phase : {&plan.prefill, &plan.decode})
    for (const auto& kern : *phase) {
      if (kern.op != "gemm" || kern.tile_k <= 0) continue;
      // Split-K parts on one GPU, times the GPUs whose partial sums the allreduce adds (row-split).
      const int64_t parts = cdiv(kern.k, kern.tile_k) * (names.k(kern.name) / kern.k);
      for (const auto& w : names.weights(kern.name)) {
        (phase == &plan.prefill ? p.k_parts : p.k_parts_decode)[w] = parts;  // 1s too: decode differs
      }
    }
  p.position_block = kFlashAttentionKeyBlock;
  return p;
}

}  // namespace tessera::sim
