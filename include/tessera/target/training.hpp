// Training on a machine, timing-only: one training step of a model on `chips` chips of an arch,
// with its time, memory per chip by kind, energy and what bounds it. Each target models training
// its own way (GPUs: 3D parallelism with ZeRO and a 1F1B pipeline; wafers: weight streaming from
// an external store through a broadcast/reduce tree), from the same training graph and its costs
// (compiler/training_cost.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tessera/compiler/fit.hpp"
#include "tessera/ir/autodiff.hpp"

namespace tessera::target {

// How a GPU's attention kernels treat the scores: `fused` keeps them on chip (FlashAttention);
// `unfused` writes the full s x s scores to HBM and runs softmax and dropout over them as kernels
// of their own (Megatron-LM's path in 2021-22: Korthikanti et al. 2022, Table 2 counts the
// scores, softmax output, dropout mask and output as activations).
enum class AttentionKernel { Fused, Unfused };
AttentionKernel parse_attention_kernel(const std::string& name);  // "fused", "unfused"; throws Error
const char* attention_kernel_name(AttentionKernel kernel);

struct TrainingWork {
  int64_t chips = 1;
  int64_t global_batch = 0;  // sequences per optimizer step; 0: the target's default for the chips
  int64_t seq = 2048;        // tokens per sequence
  int64_t micro_batch = 0;   // sequences per micro-batch (pipelines); 0: the target chooses (the fastest that fits)
  int64_t tensor_parallel = 0, pipeline_parallel = 0;  // 0: the target chooses (the fastest that fits)
  int64_t interleave = 1;  // pipelines: chunks of layers per chip (Megatron's interleaved 1F1B schedule)
  int zero_stage = 1;      // 0-3: what data-parallel replicas shard (optimizer, + gradients, + weights)
  ir::Recompute recompute = ir::Recompute::Selective;
  AttentionKernel attention = AttentionKernel::Fused;  // GPUs; other fabrics keep scores on chip
  // GPUs: norms and residual adds split over the tensor-parallel group by tokens (Korthikanti et
  // al. 2022); false runs them whole on every chip of the group, as Megatron-LM did before.
  bool sequence_parallel = true;
};

// Bytes per chip by what they hold, against the chip's memory.
struct TrainingMemory {
  std::string resource;  // "HBM per GPU", "SRAM of the wafer"
  double weights = 0, gradients = 0, optimizer = 0, activations = 0, available = 0;
  double used() const { return weights + gradients + optimizer + activations; }
};

// One slice of a step's timeline: what ran on which track (a pipeline stage, the weight stream,
// a collective), from when, for how long (seconds from the step's start).
struct TimelineEvent {
  std::string track, name;
  double start_s = 0, duration_s = 0;
};

struct TrainingReport {
  std::string arch_name, model_name;
  std::string mode;    // "3D parallel", "weight streaming"
  std::string layout;  // "tp 8 x pp 8 x dp 16, ZeRO-1, 64 micro-batches of 1"
  int64_t chips = 0, global_batch = 0, seq = 0, micro_batches = 0;
  ir::Recompute recompute = ir::Recompute::None;  // what the step does (a wafer may fall back to full)
  double step_s = 0, tokens_per_s = 0;
  double mfu = 0, hfu = 0;             // model FLOPs (no recompute) and hardware FLOPs per (peak x time)
  double model_flops_per_step = 0;     // 2 x MACs of forward and backward, all chips
  double hardware_flops_per_step = 0;  // and of the forward passes run again (recompute)
  double energy_per_step_j = 0;
  double communication_share = 0;  // of the step, time spent only communicating
  double bubble_fraction = 0;      // pipelines: the idle share of a 1F1B schedule, (p - 1) / (m + p - 1)
  std::string bound;               // what the step is mostly spent on
  TrainingMemory memory;           // the fullest chip
  std::vector<std::pair<std::string, double>> breakdown;  // seconds per part of the step, in order
  std::vector<std::string> assumptions;                   // modelling choices a reader should know
  std::vector<TimelineEvent> timeline;                    // one step, track by track (for --trace)
};

struct TrainingOutcome {
  compiler::FitStatus status;  // failure: the report is empty
  TrainingReport report;
};

}  // namespace tessera::target
