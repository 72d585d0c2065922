#include <fmt/core.h>

#include <algorithm>

#include "tessera/ir/builders.hpp"
#include "training_common.hpp"

namespace tessera::target {

AttentionKernel parse_attention_kernel(const std::string& name) {
  if (name == "fused") return AttentionKernel::Fused;
  if (name == "unfused") return AttentionKernel::Unfused;
  fail("unknown attention kernel '{}': expected fused (scores stay on chip) or unfused (scores in HBM)", name);
}

const char* attention_kernel_name(AttentionKernel kernel) {
  return kernel == AttentionKernel::Fused ? "fused" : "unfused";
}

TrainingOutcome Target::simulate_training(const ModelSource&, const TrainingWork&) const {
  fail("training on {} ({} fabric) has no timing model yet; the shared_memory, mesh2d and exchange targets have one",
       arch().name, arch().fabric);
}

TrainingValues Target::training_values(const ModelSource&, const TrainingWork&) const {
  fail(
      "training with values on {} ({} fabric) is not modelled (its backward kernels' order of sums is its vendor "
      "library's); train on the host (no --arch), on a mesh2d or exchange chip, or add --no-numerics to time one "
      "step",
      arch().name, arch().fabric);
}

CostedModel costed_model(const ModelSource& model, const TrainingWork& work) {
  if (work.seq < 1 || work.seq > model.config.context_length)
    fail("--seq {}: {} takes sequences of 1 to {} tokens", work.seq, model.config.name, model.config.context_length);
  const ir::Graph graph = model.graph ? *model.graph : ir::build_model_graph(model.config);
  ir::TrainingOptions options;
  options.recompute = work.recompute;
  CostedModel m{ir::build_training_graph(graph, options), {}};
  m.cost = compiler::training_cost(m.graph, work.seq);
  return m;
}

std::vector<TimelineEvent> one_f_one_b_timeline(const PipelineSchedule& s) {
  const int64_t p = s.stages, m = s.micro_batches;
  struct Op {
    bool forward;
    int64_t micro;
  };
  std::vector<std::vector<Op>> order(static_cast<size_t>(p));
  for (int64_t st = 0; st < p; ++st) {
    auto& ops = order[static_cast<size_t>(st)];
    const int64_t warmup = std::min(p - 1 - st, m);
    for (int64_t i = 0; i < warmup; ++i) ops.push_back({true, i});
    for (int64_t i = 0; i < m - warmup; ++i) ops.push_back({true, warmup + i}), ops.push_back({false, i});
    for (int64_t i = m - warmup; i < m; ++i) ops.push_back({false, i});
  }
  const auto at = [m](int64_t stage, int64_t micro) { return static_cast<size_t>(stage * m + micro); };
  std::vector<double> forward_end(static_cast<size_t>(p * m), -1), backward_end(static_cast<size_t>(p * m), -1);
  std::vector<size_t> next(static_cast<size_t>(p), 0);
  std::vector<double> free_at(static_cast<size_t>(p), 0);
  std::vector<TimelineEvent> events;
  const std::string label =
      s.interleave > 1 ? fmt::format(" (drawn without its {}-way interleaving)", s.interleave) : "";
  for (bool progressed = true; progressed;) {
    progressed = false;
    for (int64_t st = 0; st < p; ++st) {
      const auto si = static_cast<size_t>(st);
      while (next[si] < order[si].size()) {
        const Op op = order[si][next[si]];
        const double ready = op.forward
                                 ? (st == 0 ? 0 : forward_end[at(st - 1, op.micro)])
                                 : (st == p - 1 ? forward_end[at(st, op.micro)] : backward_end[at(st + 1, op.micro)]);
        if (ready < 0) break;
        const double start = std::max(ready, free_at[si]), length = op.forward ? s.forward_s : s.backward_s;
        free_at[si] = start + length;
        (op.forward ? forward_end : backward_end)[at(st, op.micro)] = free_at[si];
        if (st < 4 || st >= p - 4)
          events.push_back({fmt::format("pipeline stage {}{}", st, label),
                            fmt::format("{} {}", op.forward ? "forward" : "backward", op.micro), start, length});
        ++next[si], progressed = true;
      }
    }
  }
  const double pipeline_end = *std::max_element(free_at.begin(), free_at.end());
  if (s.data_parallel_s > 0)
    events.push_back({"data-parallel gradients", "all-reduce", pipeline_end, s.data_parallel_s});
  events.push_back({"optimizer", "AdamW", pipeline_end + s.data_parallel_s, s.optimizer_s});
  return events;
}

}  // namespace tessera::target
