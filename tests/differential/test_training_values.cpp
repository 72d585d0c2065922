// A training step with values on a chip: the default model laid out on one wse2 (a region per
// layer, each matrix tiled over its cores) and on one gc200 (each matrix over its tiles), its
// matrix products' sums split as those cores and tiles split them. One AdamW step gives the
// host reference's loss, gradients and updated weights within fp32 tolerance, and is not
// bit-identical to it (the split is real). A step that does not fit the chip is a fit failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "tessera/ir/builders.hpp"
#include "tessera/ref/trainer.hpp"
#include "tessera/target/registry.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;
using tessera::testing::max_relative_error;

namespace {

const std::string kRoot = TESSERA_SOURCE_DIR;

target::ModelSource source(const std::string& name) {
  const std::string path =
      name == "default" ? kRoot + "/models/default/config.yaml" : kRoot + "/configs/models/" + name + ".yaml";
  return {ir::load_model_config(path), "", path};
}

std::unique_ptr<target::Target> chip(const std::string& preset) {
  return target::load_target(kRoot + "/configs/arch/" + preset + ".yaml");
}

constexpr int64_t kSequences = 2, kSeq = 32;

// Deterministic token windows of the default model's vocabulary.
struct Batch {
  std::vector<int32_t> inputs, targets;
};
Batch batch(int64_t vocab) {
  Batch b;
  for (int64_t i = 0; i < kSequences * kSeq; ++i) {
    b.inputs.push_back(static_cast<int32_t>((i * 131 + 7) % vocab));
    b.targets.push_back(static_cast<int32_t>((i * 71 + 3) % vocab));
  }
  return b;
}

constexpr double kLr = 1e-3;

// Updated weights against the reference's, in units of what the error may be: 1e-5 of the
// tensor's largest weight, plus what the two gradients' difference (held to 1e-5 above) moves
// AdamW's first step, lr g / (|g| + eps), whose slope lr eps / (|g| + eps)^2 is steep where a
// gradient is as small as eps (GPT-2's key bias has an exactly-zero gradient: rounding noise there
// becomes steps of up to a tenth of lr), twice the first-order estimate. `clip`: the factor
// clipping to the global norm scaled the gradients by.
double update_error(std::span<const float> got, std::span<const float> want, std::span<const float> g_got,
                    std::span<const float> g_want, double lr, double eps, double clip) {
  double w_max = 0, worst = 0;
  for (float w : want) w_max = std::max(w_max, static_cast<double>(std::abs(w)));
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = clip * std::min(std::abs(g_got[i]), std::abs(g_want[i])) + eps;
    const double allowed = 1e-5 * w_max + 2 * lr * eps * clip * std::abs(g_got[i] - g_want[i]) / (g * g);
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]) / allowed);
  }
  return worst;
}

void expect_step_equals_reference(const std::string& preset) {
  const target::ModelSource model = source("default");
  const target::TrainingValues values =
      chip(preset)->training_values(model, {.chips = 1, .global_batch = kSequences, .seq = kSeq});
  ASSERT_TRUE(values.status) << values.status.message();
  const auto& k_parts = values.partitioning.k_parts;
  ASSERT_TRUE(k_parts.contains("h.0.attn.c_attn.weight")) << preset;
  EXPECT_GT(k_parts.at("h.0.attn.c_attn.weight"), 1) << preset << ": k is split over cores or tiles";
  EXPECT_GT(values.partitioning.backward_parts.at("h.0.mlp.c_proj.weight"), 1) << preset;

  const ir::Graph graph = ir::build_model_graph(model.config);
  const model::Weights weights = model::load_weights(graph, *model.config.weights_path);
  const ir::TrainingGraph training = ir::build_training_graph(graph);
  ref::Trainer host(training, weights), machine(training, weights, {}, values.partitioning);
  const Batch b = batch(model.config.vocab_size);
  const ref::Batch view{b.inputs, b.targets, kSequences};
  const ref::StepResult want = host.step({&view, 1}, kLr), got = machine.step({&view, 1}, kLr);
  EXPECT_NEAR(got.loss, want.loss, 1e-6 * want.loss) << preset;
  EXPECT_NEAR(got.gradient_norm, want.gradient_norm, 1e-5 * want.gradient_norm) << preset;
  const model::Weights host_after = host.weights(), machine_after = machine.weights();
  const double clip = std::min(1.0, training.options.optimizer.clip_norm / (want.gradient_norm + 1e-6));
  bool identical = true;
  for (const std::string& p : training.parameters) {
    const auto g_want = host.gradient(p), g_got = machine.gradient(p);
    EXPECT_LT(max_relative_error(g_got, g_want), 1e-5) << preset << " gradient of " << p;
    identical = identical && std::equal(g_want.begin(), g_want.end(), g_got.begin());
    const auto& w_want = host_after.at(p).values;
    const auto& w_got = machine_after.at(p).values;
    EXPECT_LE(update_error(w_got, w_want, g_got, g_want, kLr, training.options.optimizer.eps, clip), 1.0)
        << preset << " updated " << p;
  }
  EXPECT_FALSE(identical) << preset << ": the machine's order of sums changes the last bits";
}

}  // namespace

TEST(TrainingValues, OneStepOnAWaferEqualsTheReference) { expect_step_equals_reference("wse2"); }

TEST(TrainingValues, OneStepOnAnIpuEqualsTheReference) { expect_step_equals_reference("gc200"); }

TEST(TrainingValues, APartitioningNamingNoWeightIsRefused) {
  const target::ModelSource model = source("default");
  const ir::Graph graph = ir::build_model_graph(model.config);
  const ir::TrainingGraph training = ir::build_training_graph(graph);
  const model::Weights weights = model::load_weights(graph, *model.config.weights_path);
  ref::Partitioning split;
  split.backward_parts["no.such.weight"] = 2;
  EXPECT_NE(error_of([&] { ref::Trainer(training, weights, {}, split); }).find("'no.such.weight' is not a weight"),
            std::string::npos);
  split.backward_parts = {{"h.0.mlp.c_fc.weight", 0}};
  EXPECT_NE(error_of([&] { ref::Trainer(training, weights, {}, split); }).find("split into 0 parts"),
            std::string::npos);
}

TEST(TrainingValues, AStepThatDoesNotFitTheChipNamesWhatOverflows) {
  const auto ipu = chip("gc200")->training_values(source("gpt2-small"), {.chips = 1, .global_batch = 1, .seq = 128});
  ASSERT_FALSE(ipu.status);
  EXPECT_EQ(ipu.status.failure().resource, "SRAM of the IPU");
  const auto wafer = chip("wse2")->training_values(source("gpt2-xl"), {.chips = 1, .global_batch = 8, .seq = 1000});
  ASSERT_FALSE(wafer.status);
  EXPECT_EQ(wafer.status.failure().resource, "SRAM of the wafer") << wafer.status.message();
  EXPECT_NE(
      error_of([] { chip("h100")->training_values(source("default"), {.chips = 1, .seq = 32}); }).find("not modelled"),
      std::string::npos);
}
