// The machines' training models against first principles: a step is never faster than its MACs at
// peak or than streaming the weights through the I/O, more systems never lower throughput, ZeRO
// lowers memory per GPU stage by stage, the 1F1B bubble is (p - 1) / (m + p - 1), and a model too
// large for its GPUs is a fit failure naming HBM.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <algorithm>

#include "tessera/compiler/training_cost.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/target/registry.hpp"

using namespace tessera;

namespace {

target::ModelSource source(const std::string& name) {
  const std::string path = name == "default" ? std::string(TESSERA_SOURCE_DIR) + "/models/default/config.yaml"
                                             : std::string(TESSERA_SOURCE_DIR) + "/configs/models/" + name + ".yaml";
  return {ir::load_model_config(path), "", path};
}

std::unique_ptr<target::Target> chip(const std::string& preset) {
  return target::load_target(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + preset + ".yaml");
}

target::TrainingReport step(const std::string& preset, const std::string& model_name, target::TrainingWork work) {
  const auto outcome = chip(preset)->simulate_training(source(model_name), work);
  EXPECT_TRUE(outcome.status) << outcome.status.message();
  return outcome.report;
}

}  // namespace

TEST(TrainingCost, FlopsAreSixPerParameterPerTokenPlusAttention) {
  const auto config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/configs/models/gpt2-small.yaml");
  const auto training = ir::build_training_graph(ir::build_model_graph(config));
  const auto cost = compiler::training_cost(training, 1024);
  const double six_n_s = 6 * static_cast<double>(ir::build_model_graph(config).parameter_count()) * 1024;
  EXPECT_GT(cost.model_flops(), six_n_s * 0.95) << "the position table does no FLOPs; every other weight 6 per token";
  EXPECT_LT(cost.model_flops(), six_n_s * 1.4) << "attention adds 12 x layers x d x seq per token";
  EXPECT_NEAR(cost.total().parameters, static_cast<double>(ir::build_model_graph(config).parameter_count()), 0.5);
}

TEST(TrainingModels, AStepIsNeverFasterThanItsMacsAtPeakOrItsWeightStream) {
  const auto gpu = step("h100", "llama3-70b", {.chips = 1024, .seq = 2048});
  const auto gpu_chip = chip("h100");
  EXPECT_GE(gpu.step_s * 1024 * 2 * gpu_chip->arch().peak_macs_per_second("bf16"), gpu.model_flops_per_step);
  EXPECT_LE(gpu.mfu, 1.0);
  const auto wafer = step("wse2", "gpt2-xl", {.chips = 16, .seq = 1024});
  const auto wafer_chip = chip("wse2");
  EXPECT_GE(wafer.step_s * 16 * 2 * wafer_chip->arch().peak_macs_per_second("fp16"), wafer.model_flops_per_step);
  const double params = static_cast<double>(ir::build_model_graph(source("gpt2-xl").config).parameter_count());
  EXPECT_GE(wafer.step_s, 2 * params * 2 / wafer_chip->arch().io.host_bytes_per_second)
      << "fp16 weights stream in twice (forward, backward) over the system I/O";
}

// Weak scaling (the same sequences per replica): with a fixed global batch a wafer cluster becomes
// bound by streaming the weights, and the tree's extra level then costs about 1% (gpt2-xl, 256
// sequences: 32 -> 64 systems 5.27M -> 5.22M tokens/s).
TEST(TrainingModels, MoreSystemsNeverLowerThroughput) {
  double last = 0;
  for (int64_t systems : {4, 8, 16, 32, 64}) {
    const auto r = step("wse2", "gpt2-xl", {.chips = systems, .global_batch = 16 * systems, .seq = 1024});
    EXPECT_GE(r.tokens_per_s, last) << systems << " systems";
    last = r.tokens_per_s;
  }
  last = 0;
  for (int64_t gpus : {64, 128, 256, 512, 1024}) {
    const auto r = step("h100", "llama3-8b", {.chips = gpus, .global_batch = 2 * gpus, .seq = 2048});
    EXPECT_GE(r.tokens_per_s, last) << gpus << " GPUs";
    last = r.tokens_per_s;
  }
}

TEST(TrainingModels, MemoryPerGpuFallsAsZeroRises) {
  double last = 1e30;
  for (int zero = 0; zero <= 3; ++zero) {
    const auto r = step("h100", "llama3-8b",
                        {.chips = 64,
                         .global_batch = 256,
                         .seq = 2048,
                         .tensor_parallel = 2,
                         .pipeline_parallel = 2,
                         .zero_stage = zero});
    EXPECT_LT(r.memory.used(), last) << "ZeRO-" << zero;
    last = r.memory.used();
  }
}

TEST(TrainingModels, PipelineBubbleIsThatOfOneFOneB) {
  const auto r = step(
      "h100", "llama3-8b",
      {.chips = 64, .global_batch = 64, .seq = 2048, .micro_batch = 1, .tensor_parallel = 8, .pipeline_parallel = 4});
  ASSERT_EQ(r.micro_batches, 32) << "64 sequences over dp 2 in micro-batches of 1";
  EXPECT_DOUBLE_EQ(r.bubble_fraction, 3.0 / 35.0);
  // Interleaved over v chunks per GPU, the fill and drain shrink to (p - 1) / v micro-batch slots.
  const auto interleaved = step("h100", "llama3-8b",
                                {.chips = 64,
                                 .global_batch = 64,
                                 .seq = 2048,
                                 .micro_batch = 1,
                                 .tensor_parallel = 8,
                                 .pipeline_parallel = 4,
                                 .interleave = 2});
  EXPECT_DOUBLE_EQ(interleaved.bubble_fraction, 3.0 / 67.0);
  EXPECT_LT(interleaved.step_s, r.step_s);
  EXPECT_THROW(step("h100", "llama3-8b", {.chips = 64, .tensor_parallel = 8, .pipeline_parallel = 4, .interleave = 3}),
               Error)
      << "32 layers do not split into 4 stages x 3 chunks";
}

// Without --micro-batch each layout tries micro-batches of 1, 2, 4, ... and keeps the fastest per
// sequence that fits: BERT-large's 128-token sequences one at a time leave an H100 launch-bound.
// A negative size is refused, and so is any size on a wafer (it chooses its own).
TEST(TrainingModels, TheMicroBatchIsChosenWhenNotGiven) {
  const target::TrainingWork base{
      .chips = 8, .global_batch = 1024, .seq = 128, .tensor_parallel = 1, .pipeline_parallel = 1};
  const auto chosen = step("h100", "bert-large", base);
  const int64_t micro_batch = 1024 / 8 / chosen.micro_batches;
  EXPECT_GT(micro_batch, 1);
  EXPECT_NE(chosen.layout.find(fmt::format("of {} per pipeline", micro_batch)), std::string::npos) << chosen.layout;
  for (int64_t size = 1; size <= 128; size *= 2) {
    target::TrainingWork fixed = base;
    fixed.micro_batch = size;
    const auto r = step("h100", "bert-large", fixed);
    EXPECT_LE(chosen.step_s, r.step_s * (1 + 1e-12)) << "micro-batches of " << size;
    if (size == micro_batch) {
      EXPECT_DOUBLE_EQ(chosen.step_s, r.step_s);
    }
  }
  EXPECT_GT(step("h100", "bert-large", {.chips = 8, .global_batch = 1024, .seq = 128, .micro_batch = 1}).step_s,
            1.5 * chosen.step_s);
  EXPECT_THROW(step("h100", "bert-large", {.chips = 8, .seq = 128, .micro_batch = -1}), Error);
  EXPECT_THROW(step("gc200", "default", {.chips = 8, .seq = 256, .micro_batch = -1}), Error);
  EXPECT_THROW(step("wse2", "default", {.chips = 2, .seq = 256, .micro_batch = 2}), Error)
      << "a wafer chooses its own micro-batches: an explicit size is refused, not ignored";
}

TEST(TrainingModels, TooLargeForItsGpusIsAFitFailureNamingHbm) {
  const auto outcome = chip("h100")->simulate_training(source("llama3-70b"), {.chips = 8, .seq = 2048});
  ASSERT_FALSE(outcome.status);
  EXPECT_EQ(outcome.status.failure().resource, "HBM per GPU");
  EXPECT_GT(outcome.status.failure().needed, outcome.status.failure().available);
}

// IPUs keep everything resident: a step is never faster than its MACs at the tiles' peak, the
// pipeline's bubble is 1F1B's, and a model whose embeddings and AdamW state outgrow one IPU's SRAM
// is a fit failure naming it (GPT-2 small's 39M-parameter tied embedding needs 0.65 GiB of 0.79).
TEST(TrainingModels, IpusTrainPipelinedWithEverythingInSram) {
  const auto r =
      step("gc200", "default", {.chips = 8, .global_batch = 64, .seq = 256, .micro_batch = 1, .pipeline_parallel = 4});
  EXPECT_DOUBLE_EQ(r.bubble_fraction, 3.0 / 35.0) << "64 sequences over 2 replicas: 32 micro-batches, p = 4";
  EXPECT_GE(r.step_s * 8 * 2 * chip("gc200")->arch().peak_macs_per_second("fp16"), r.hardware_flops_per_step);
  EXPECT_LE(r.memory.used(), r.memory.available);
  const auto bow = step("bow", "default", {.chips = 8, .global_batch = 64, .seq = 256, .pipeline_parallel = 4});
  EXPECT_LT(bow.step_s, r.step_s) << "Bow is a GC200 at a higher clock";
  const auto outcome =
      chip("gc200")->simulate_training(source("gpt2-small"), {.chips = 12, .global_batch = 240, .seq = 1024});
  ASSERT_FALSE(outcome.status);
  EXPECT_EQ(outcome.status.failure().resource, "SRAM of the IPU");
  EXPECT_THROW(chip("gc200")->simulate_training(source("default"), {.chips = 4, .seq = 256, .tensor_parallel = 2}),
               Error);
}

// The timeline a trace draws is the schedule the step time comes from: the 1F1B simulation ends
// where the closed form (m + p - 1)(forward + backward) does, and the weight stream's layer-by-
// layer slices add up to the wafer's step.
TEST(TrainingModels, TimelinesEndAtTheStepTime) {
  const auto end = [](const target::TrainingReport& r) {
    double last = 0;
    for (const auto& e : r.timeline) last = std::max(last, e.start_s + e.duration_s);
    return last;
  };
  const auto gpu = step("h100", "llama3-8b",
                        {.chips = 64, .global_batch = 64, .seq = 2048, .tensor_parallel = 8, .pipeline_parallel = 4});
  ASSERT_FALSE(gpu.timeline.empty());
  EXPECT_NEAR(end(gpu), gpu.step_s, 1e-9 * gpu.step_s);
  const auto wafer = step("wse2", "gpt2-xl", {.chips = 16, .seq = 1024});
  EXPECT_NEAR(end(wafer), wafer.step_s, 1e-9 * wafer.step_s);
}

// When each system's sequences do not fit the wafer's SRAM even with full recomputation, the
// wafer accumulates gradients over micro-batches, the fewest that fit, each streaming the weights.
TEST(TrainingModels, AWaferTakesMicroBatchesWhenTheBatchDoesNotFit) {
  const auto r = step("wse2", "llama3-8b", {.chips = 16, .global_batch = 1024, .seq = 2048});
  EXPECT_GT(r.micro_batches, 1);
  EXPECT_LE(r.memory.used(), r.memory.available);
  const auto fewer = step("wse2", "llama3-8b", {.chips = 16, .global_batch = 16 * 64 / r.micro_batches, .seq = 2048});
  EXPECT_EQ(fewer.micro_batches, 1) << "one micro-batch's worth of sequences fits in one pass";
  EXPECT_NEAR(fewer.memory.activations, r.memory.activations, 1e-6 * r.memory.activations);
}

// A model whose whole training state fits the wafer trains layer-pipelined with its weights
// resident: a region per stage, sequences on a 1F1B schedule (bubble (p - 1) / (m + p - 1)), no
// weight I/O; never faster than its MACs at peak; the memory is per core and fits. gpt2-xl does
// not fit (1.56G parameters x 18 bytes > 28 GiB) and streams.
TEST(TrainingModels, SmallModelsTrainWithWeightsResidentLargeOnesStream) {
  const auto r = step("wse2", "default", {.chips = 1, .global_batch = 64, .seq = 128});
  EXPECT_EQ(r.mode, "layer-pipelined (weights resident)");
  const double p = static_cast<double>(source("default").config.n_layers + 1), m = 64;
  EXPECT_NEAR(r.bubble_fraction, (p - 1) / (m + p - 1), 1e-12);
  EXPECT_EQ(r.memory.resource, "SRAM per core");
  EXPECT_GT(r.memory.used(), 0);
  EXPECT_LE(r.memory.used(), r.memory.available);
  EXPECT_GE(r.step_s * 2 * chip("wse2")->arch().peak_macs_per_second("fp16"), r.model_flops_per_step);
  const auto two = step("wse2", "default", {.chips = 2, .global_batch = 128, .seq = 128});
  EXPECT_GE(two.tokens_per_s, r.tokens_per_s) << "a second system with the same sequences each";
  EXPECT_GT(two.communication_share, 0) << "the replicas sum their gradients";
  EXPECT_EQ(step("wse2", "gpt2-xl", {.chips = 16, .seq = 1024}).mode, "weight streaming");
}

// Unfused attention (Megatron-LM's path) computes all s^2 scores of every head and moves them
// through HBM: 13 bytes per score forward or recomputed, 19 backward; scores that are not
// recomputed stay in HBM (5 bytes each, Korthikanti et al. 2022, Table 2).
TEST(TrainingModels, UnfusedAttentionMovesEveryScoreThroughHbm) {
  const auto config = source("megatron-22b").config;
  const auto s = static_cast<double>(2048), d = static_cast<double>(config.d_model);
  const auto heads = static_cast<double>(config.n_heads), layers = static_cast<double>(config.n_layers);
  const double tp = 8;
  const double hbm = chip("a100")->arch().gpu.sustained_hbm_bytes_per_second();
  auto share = [](const target::TrainingReport& r, const std::string& name) {
    for (const auto& [what, seconds] : r.breakdown)
      if (what == name) return seconds;
    ADD_FAILURE() << name << " missing";
    return 0.0;
  };
  // One s x s x head_dim product over all heads, causal: what the fused graph counts.
  const double product = d * s * (s + 1), full_product = 2 * d * s * s;
  struct Case {
    ir::Recompute recompute;
    int64_t sequences;
    double bytes_per_score, extra_flops;  // per layer and sequence
  };
  for (const Case& c : {Case{ir::Recompute::None, 1, 13 + 19, 6 * (full_product - product)},
                        // the gradient scores again (q k^T) fused; unfused recomputes q k^T and p v
                        Case{ir::Recompute::Selective, 4, 13 + 13 + 19, 8 * full_product - 7 * product},
                        // the forward runs again; the fused gradient still scores again
                        Case{ir::Recompute::Full, 4, 13 + 13 + 19, 8 * full_product - 9 * product}}) {
    SCOPED_TRACE(ir::recompute_name(c.recompute));
    target::TrainingWork work{.chips = 8,
                              .global_batch = c.sequences,
                              .seq = 2048,
                              .micro_batch = c.sequences,
                              .tensor_parallel = 8,
                              .pipeline_parallel = 1,
                              .zero_stage = 0,
                              .recompute = c.recompute};
    const auto fused = step("a100", "megatron-22b", work);
    work.attention = target::AttentionKernel::Unfused;
    const auto unfused = step("a100", "megatron-22b", work);
    const auto sequences = static_cast<double>(c.sequences);
    const double scores = heads * s * s * sequences * layers / tp;
    EXPECT_NEAR(share(unfused, "attention scores in HBM (unfused)"), c.bytes_per_score * scores / hbm, 1e-9);
    EXPECT_EQ(share(fused, "attention scores in HBM (unfused)"), 0);
    EXPECT_NEAR(unfused.hardware_flops_per_step - fused.hardware_flops_per_step, c.extra_flops * layers * sequences,
                1e-9 * unfused.hardware_flops_per_step);
    const double kept = c.recompute == ir::Recompute::None ? (5 * s * s - s * (s + 1)) * heads * layers / tp : 0;
    EXPECT_NEAR(unfused.memory.activations - fused.memory.activations, kept, 1.0);
    EXPECT_GT(unfused.step_s, fused.step_s);
  }
  try {
    step("wse2", "gpt2-small", {.chips = 1, .seq = 1024, .attention = target::AttentionKernel::Unfused});
    ADD_FAILURE() << "a wafer took unfused attention";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GPU kernel path"), std::string::npos) << e.what();
  }
}

// Without sequence parallelism (Megatron-LM before Korthikanti et al. 2022) every GPU of a
// tensor-parallel group runs the norms and residual adds on whole rows and keeps their outputs:
// with full recompute a layer then keeps its whole input, 2 s b h bytes, on every GPU (Table 2's
// baseline), where sequence parallelism keeps 1/t of it.
TEST(TrainingModels, WithoutSequenceParallelismNormsRunWholeOnEveryGpu) {
  const auto config = source("megatron-22b").config;
  const int64_t seq = 2048, sequences = 4;
  const auto cost = compiler::training_cost(
      ir::build_training_graph(ir::build_model_graph(config), {.recompute = ir::Recompute::Full}), seq);
  double saved_whole = 0;
  for (const auto& layer : cost.layers) {
    EXPECT_EQ(layer.saved_whole_rows, static_cast<double>(seq * config.d_model)) << "a layer keeps its input only";
    EXPECT_GT(layer.forward_whole_rows, 0);
    EXPECT_LT(layer.forward_whole_rows + layer.backward_whole_rows,
              layer.forward_elementwise + layer.backward_elementwise)
        << "the activation function is split over the group";
    saved_whole += layer.saved_whole_rows;
  }
  const double whole = cost.total().forward_whole_rows + cost.total().backward_whole_rows;  // the final norm too
  auto seconds = [](const target::TrainingReport& r, const std::string& name) {
    for (const auto& [what, s] : r.breakdown)
      if (what == name) return s;
    ADD_FAILURE() << name << " missing";
    return 0.0;
  };
  const double hbm = chip("a100")->arch().gpu.sustained_hbm_bytes_per_second();
  target::TrainingWork work{.chips = 8,
                            .global_batch = sequences,
                            .seq = seq,
                            .micro_batch = sequences,
                            .tensor_parallel = 8,
                            .pipeline_parallel = 1,
                            .zero_stage = 0,
                            .recompute = ir::Recompute::Full};
  const auto split = step("a100", "megatron-22b", work);
  work.sequence_parallel = false;
  const auto whole_rows = step("a100", "megatron-22b", work);
  const double extra = 7.0 / 8 * static_cast<double>(sequences);  // the share of a whole row each GPU adds
  EXPECT_NEAR(seconds(whole_rows, "elementwise ops (HBM-bound)") - seconds(split, "elementwise ops (HBM-bound)"),
              extra * whole * 2 / hbm, 1e-9);
  EXPECT_NEAR(whole_rows.step_s - split.step_s, extra * whole * 2 / hbm, 1e-9);
  EXPECT_NEAR(whole_rows.memory.activations - split.memory.activations, extra * saved_whole * 2, 1.0);
  // Without tensor parallelism there is nothing to split.
  const target::TrainingWork alone{.chips = 1, .seq = 1024, .tensor_parallel = 1, .sequence_parallel = false};
  EXPECT_EQ(step("a100", "gpt2-small", alone).step_s,
            step("a100", "gpt2-small", {.chips = 1, .seq = 1024, .tensor_parallel = 1}).step_s);
  try {
    step("gc200", "gpt2-small", {.chips = 4, .seq = 1024, .sequence_parallel = false});
    ADD_FAILURE() << "an IPU took --no-sequence-parallel";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor-parallel GPUs"), std::string::npos) << e.what();
  }
}

// The training graph's weight products: forward 2 s x (the layer's matrix parameters), backward
// twice that; the attention output and second MLP projections are row-parallel (they feed the
// residual adds), the rest column-parallel. On GPUs they run in waves of CTA tiles over the SMs:
// never faster than at the flat sustained rate, and at 22B's shapes within a few percent of it.
TEST(TrainingModels, WeightProductsRunInWavesOfTilesOverTheSms) {
  using Dim = compiler::MatrixProduct::Dim;
  const auto config = source("megatron-22b").config;
  const int64_t seq = 2048, d = config.d_model, ff = config.d_ff;
  const auto cost = compiler::training_cost(ir::build_training_graph(ir::build_model_graph(config)), seq);
  const compiler::PhaseCost& layer = cost.layers.front();
  double forward = 0, backward = 0;
  int row_parallel = 0;
  for (const auto& p : layer.products) {
    (p.forward ? forward : backward) += p.flops();
    if (p.forward && p.split == Dim::K) {
      ++row_parallel;
      EXPECT_EQ(p.n, d) << "a row-parallel product writes the residual stream";
    }
    EXPECT_EQ(p.tokens == Dim::K ? p.k : p.m, seq);
  }
  const double matrices = static_cast<double>(4 * d * d + 2 * d * ff);
  EXPECT_DOUBLE_EQ(forward, 2.0 * static_cast<double>(seq) * matrices);
  EXPECT_DOUBLE_EQ(backward, 2 * forward);
  EXPECT_EQ(row_parallel, 2);

  const target::TrainingWork work{.chips = 8,
                                  .global_batch = 4,
                                  .seq = seq,
                                  .micro_batch = 4,
                                  .tensor_parallel = 8,
                                  .pipeline_parallel = 1,
                                  .zero_stage = 0,
                                  .recompute = ir::Recompute::None};
  const auto r = step("a100", "megatron-22b", work);
  const auto a100 = chip("a100")->arch();
  const double sustained = 2 * a100.peak_macs_per_second("bf16") * a100.gpu.matmul_efficiency;
  const double flat = 4 * cost.total().forward_flops / 8 / sustained;
  EXPECT_GT(r.breakdown.front().second, flat) << r.breakdown.front().first;
  EXPECT_LT(r.breakdown.front().second, 1.05 * flat);
}

// Collectives run at the share of the link's line rate that NCCL sustains (link.efficiency): a
// ring all-reduce's bandwidth term scales with its inverse.
TEST(TrainingModels, TensorParallelAllReducesRunAtTheSustainedLinkRate) {
  const auto a100 = chip("a100");
  EXPECT_NEAR(a100->arch().chip_link.sustained_bytes_per_second(), 0.77 * 300e9, 1e3);
  const target::TrainingWork work{.chips = 8,
                                  .global_batch = 4,
                                  .seq = 2048,
                                  .micro_batch = 4,
                                  .tensor_parallel = 8,
                                  .pipeline_parallel = 1,
                                  .zero_stage = 0,
                                  .recompute = ir::Recompute::Full};
  target::ArchSource halved{a100->arch(), "", "a100 at half its link efficiency"};
  halved.spec.chip_link.efficiency /= 2;
  const auto measured = a100->simulate_training(source("megatron-22b"), work).report;
  const auto slower = target::make_target(halved)->simulate_training(source("megatron-22b"), work).report;
  const auto allreduce = [](const target::TrainingReport& r) {
    return std::find_if(r.breakdown.begin(), r.breakdown.end(),
                        [](const auto& e) { return e.first == "tensor-parallel all-reduces"; })
        ->second;
  };
  // 6 all-reduces per layer (full recompute), 14 latency steps each of 2 us; the rest bandwidth.
  const double latency = 48 * 6 * 14 * 2e-6;
  EXPECT_NEAR(allreduce(slower) - latency, 2 * (allreduce(measured) - latency), 1e-9);
}

// trn1's chip links against nccom-test's published Trn1 runs (docs/hardware-sources.md [A8]): a
// ring over n ranks moves 2 (n - 1) / n of an all-reduce's bytes (an all-gather half of it) across
// each link at the sustained rate, one link latency per step. The preset took its efficiency from
// the 1 GiB all-reduce and its latency from the 1 KiB all-gather; the other sizes are predictions.
TEST(TrainingModels, TrainiumLinksReproduceNccomTestsCollectives) {
  const auto trn1 = chip("trn1");
  const double bw = trn1->arch().chip_link.sustained_bytes_per_second(), step = trn1->arch().chip_link.latency_s;
  const auto ring = [&](double bytes, double ranks, double halves) {
    return halves * ((ranks - 1) / ranks * bytes / bw + (ranks - 1) * step);
  };
  struct Measured {
    double bytes, ranks, halves, seconds, tolerance;
  };
  // 2-rank all-reduces (fp32, one instance); all-gathers on one trn1.32xlarge's 16 chips (32 ranks).
  for (const Measured& m : {Measured{1073741824, 2, 2, 18930e-6, 0.01}, Measured{268435456, 2, 2, 4750e-6, 0.01},
                            Measured{16777216, 2, 2, 332e-6, 0.06}, Measured{1024, 16, 1, 151e-6, 0.01},
                            Measured{524288, 16, 1, 179e-6, 0.12}})
    EXPECT_NEAR(ring(m.bytes, m.ranks, m.halves), m.seconds, m.tolerance * m.seconds)
        << m.bytes << " bytes over " << m.ranks << " ranks";
}
