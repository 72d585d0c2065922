// What the targets' training models share: the costed training graph of a model and collective
// times. Private to src/target/.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "tessera/compiler/training_cost.hpp"
#include "tessera/target/target.hpp"

namespace tessera::target {

struct CostedModel {
  ir::TrainingGraph graph;
  compiler::TrainingCost cost;
};
// The model's training graph (AdamW, the work's recompute mode) and its costs at work.seq tokens;
// throws Error on a sequence longer than the model's context.
CostedModel costed_model(const ModelSource& model, const TrainingWork& work);

// A ring all-reduce of `bytes` over n peers: 2 (n - 1) / n of the bytes cross each link, in
// 2 (n - 1) steps (Patarasuk & Yuan 2009); reduce-scatter or all-gather alone is half of it.
inline double ring_allreduce_s(double bytes, int64_t n, double bytes_per_second, double latency_s) {
  if (n <= 1) return 0;
  const auto peers = static_cast<double>(n);
  return 2 * (peers - 1) / peers * bytes / bytes_per_second + 2 * (peers - 1) * latency_s;
}

// Bytes of mixed-precision training as GPUs and IPUs run it: 16-bit weights and activations, fp32
// gradients, fp32 master weights and AdamW moments (12 bytes per parameter); an AdamW update reads
// the gradient, master weight and both moments and writes the last three (7 fp32 values).
struct MixedPrecisionBytes {
  double weight = 2, gradient = 4, optimizer = 12, activation = 2, adam_update = 28;
};
inline constexpr MixedPrecisionBytes kMixedPrecision{};

// The layers [first, last) of a pipeline stage: their counts summed.
inline compiler::PhaseCost layers_cost(const compiler::TrainingCost& cost, int64_t first, int64_t last) {
  compiler::PhaseCost sum;
  for (int64_t l = first; l < last; ++l) sum.add(cost.layers[static_cast<size_t>(l)]);
  return sum;
}

// What the timeline of a pipelined step needs: one micro-batch's forward and backward time on a
// stage (its communication included), the schedule's shape and the work after it.
struct PipelineSchedule {
  double forward_s = 0, backward_s = 0, data_parallel_s = 0, optimizer_s = 0;
  int64_t stages = 1, micro_batches = 1, interleave = 1;
};

// The 1F1B schedule of one step, simulated op by op: each stage runs min(p - 1 - s, m) forward
// passes, then alternates one forward and one backward, then drains its backward passes; a
// forward pass waits for the stage before, a backward pass for the stage after. With uniform
// stages it ends at (m + p - 1)(forward + backward), the closed form step times use. Then the
// data-parallel gradients and the optimizer. Stages beyond the first and last four are simulated
// but not drawn.
std::vector<TimelineEvent> one_f_one_b_timeline(const PipelineSchedule& s);

// One layout a pipelined training model evaluated: its report, its schedule (for the timeline) and
// whether it fits the chips' memory.
struct LayoutEvaluation {
  TrainingReport report;
  PipelineSchedule schedule;
  bool fits = false;
};

// Of the layouts considered: the fastest that fits (per sequence: layouts may round the default
// global batch differently), and the one that overflows its memory least (what a fit failure
// reports when none fits).
struct LayoutChoice {
  std::optional<LayoutEvaluation> best, least_over;
  void consider(const LayoutEvaluation& e) {
    const auto per_sequence = [](const LayoutEvaluation& x) {
      return x.report.step_s / static_cast<double>(x.report.global_batch);
    };
    if (e.fits && (!best || per_sequence(e) < per_sequence(*best))) best = e;
    const auto fullness = [](const LayoutEvaluation& x) { return x.report.memory.used() / x.report.memory.available; };
    if (!least_over || fullness(e) < fullness(*least_over)) least_over = e;
  }
  // The fastest layout's report with its 1F1B timeline; call only when `best` is set.
  TrainingOutcome chosen() const {
    TrainingReport r = best->report;
    r.timeline = one_f_one_b_timeline(best->schedule);
    return {{}, r};
  }
};

// The default global batch: 1,024 sequences, rounded up to a multiple of `ways`.
inline int64_t default_global_batch(int64_t ways) { return (1024 + ways - 1) / ways * ways; }

// Throws Error on a negative micro-batch (0: the target chooses).
inline void check_micro_batch(const TrainingWork& w) {
  if (w.micro_batch < 0)
    fail("--micro-batch {}: sequences per micro-batch are 1 or more (or 0, the default: the fastest that fits)",
         w.micro_batch);
}

// The micro-batch sizes a layout of `replicas` data-parallel replicas tries: the requested one, or
// (work.micro_batch 0: the target chooses) 1, 2, 4, ... while the replicas' micro-batches stay
// within the global batch (the requested one, else the default 1,024).
inline std::vector<int64_t> micro_batch_candidates(const TrainingWork& w, int64_t replicas) {
  if (w.micro_batch > 0) return {w.micro_batch};
  const int64_t batch = w.global_batch > 0 ? w.global_batch : 1024;
  std::vector<int64_t> sizes{1};
  while (replicas * sizes.back() * 2 <= batch) sizes.push_back(sizes.back() * 2);
  return sizes;
}

}  // namespace tessera::target
