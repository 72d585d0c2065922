// Autodiff and the reference trainer on their own (no PyTorch): gradients against central finite
// differences, recomputation that changes the graph but not one bit of the gradients, and the
// training graph's structure.
#include <gtest/gtest.h>

#include <cmath>

#include "tessera/ir/autodiff.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/trainer.hpp"

using namespace tessera;

namespace {

ir::ModelConfig tiny(const char* file) {
  return ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/tests/data/" + file);
}

struct Data {
  std::vector<int32_t> inputs, targets;
  ref::Batch batch() const { return {inputs, targets, 2}; }
};

Data data(int64_t vocab, int64_t length) {
  Data d;
  for (int64_t i = 0; i < 2 * length; ++i) {
    d.inputs.push_back(static_cast<int32_t>((i * 37 + 11) % vocab));
    d.targets.push_back(static_cast<int32_t>((i * 53 + 5) % vocab));
  }
  return d;
}

// For each parameter, the gradient's component along a fixed +-1 direction u, (g . u), against
// (L(w + h u) - L(w - h u)) / 2h.
void check_finite_differences(const char* config_file) {
  const auto config = tiny(config_file);
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::random_weights(graph, 21);
  const auto training = ir::build_training_graph(graph);
  const Data d = data(config.vocab_size, 8);
  ref::Trainer trainer(training, weights);
  trainer.compute_gradients(d.batch());
  const double h = 1e-3;
  for (const auto& name : training.parameters) {
    const auto grad = trainer.gradient(name);
    std::vector<float> direction(grad.size());
    double analytic = 0;
    for (size_t e = 0; e < grad.size(); ++e) {
      direction[e] = ((e * 2654435761u) >> 7) % 2 ? 1.0f : -1.0f;
      analytic += static_cast<double>(grad[e]) * direction[e];
    }
    auto loss_at = [&](double sign) {
      model::Weights moved;
      for (const auto& other : training.parameters) {
        model::Tensor t = weights.at(other);
        if (other == name)
          for (size_t e = 0; e < t.values.size(); ++e) t.values[e] += static_cast<float>(sign * h) * direction[e];
        moved.insert(other, std::move(t));
      }
      return ref::Trainer(training, moved).loss(d.batch());
    };
    const double numeric = (loss_at(1) - loss_at(-1)) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 0.02 * std::abs(numeric) + 2e-3) << config_file << ": " << name;
  }
}

}  // namespace

TEST(Autodiff, Gpt2GradientsMatchFiniteDifferences) { check_finite_differences("gpt2-tiny.yaml"); }
TEST(Autodiff, LlamaGradientsMatchFiniteDifferences) { check_finite_differences("llama-tiny.yaml"); }

TEST(Autodiff, RecomputeChangesTheGraphNotTheGradients) {
  const auto config = tiny("llama-tiny.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::random_weights(graph, 4);
  const Data d = data(config.vocab_size, 12);
  ir::TrainingOptions none, full;
  full.recompute = ir::Recompute::Full;
  const auto plain = ir::build_training_graph(graph, none), recomputed = ir::build_training_graph(graph, full);
  int recompute_nodes = 0;
  for (const auto& node : recomputed.graph.nodes()) recompute_nodes += node.phase == ir::Phase::Recompute;
  EXPECT_GT(recompute_nodes, 10 * config.n_layers) << "each layer's forward ops run again";
  EXPECT_NE(recomputed.graph.dump().find("# recompute"), std::string::npos);
  ref::Trainer a(plain, weights), b(recomputed, weights);
  EXPECT_EQ(a.compute_gradients(d.batch()), b.compute_gradients(d.batch()));
  for (const auto& name : plain.parameters) {
    const auto ga = a.gradient(name), gb = b.gradient(name);
    EXPECT_TRUE(std::equal(ga.begin(), ga.end(), gb.begin(), gb.end())) << name;
  }
}

TEST(Autodiff, TrainingGraphHasOneUpdatePerParameterAndDecaysOnlyMatrices) {
  const auto config = tiny("gpt2-tiny.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto training = ir::build_training_graph(graph);
  EXPECT_EQ(training.parameters.size(), training.updates.size());
  EXPECT_EQ(static_cast<int64_t>(training.parameters.size()), 4 + 12 * config.n_layers) << "wte, wpe, ln_f x2";
  for (const auto& [name, node] : training.updates) {
    const ir::Node& update = training.graph.node(node);
    EXPECT_EQ(update.op, ir::OpKind::AdamW);
    EXPECT_EQ(update.phase, ir::Phase::Optimizer);
    EXPECT_EQ(update.float_attr("weight_decay") > 0, update.type.shape.rank() == 2) << name;
  }
  const std::string dump = training.graph.dump();
  for (const char* expected : {"# backward", "# optimizer", "attention_grad", "embedding_grad", "grad_norm_scale"})
    EXPECT_NE(dump.find(expected), std::string::npos) << expected;
}

TEST(Autodiff, RefusesSlicesThatDoNotTileTheirInput) {
  ir::Graph g;
  const int tokens = g.add_input("tokens", ir::DType::I32, ir::Shape{{ir::kSeq}});
  const int table = g.add_param("wte.weight", ir::Shape{{16, 8}});
  const int x = g.add(ir::OpKind::Embedding, {table, tokens});
  const int part = g.add(ir::OpKind::SliceCols, {x}, {{"start", int64_t{0}}, {"size", int64_t{4}}}, "half");
  g.mark_output(g.add(ir::OpKind::Linear, {part, g.add_param("head.weight", ir::Shape{{16, 4}})}, {}, "head"));
  try {
    ir::build_training_graph(g);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cover 4 of its 8 columns"), std::string::npos) << e.what();
  }
}

TEST(Trainer, RefusesTargetsOutsideTheVocabularyAndRaggedBatches) {
  const auto config = tiny("gpt2-tiny.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto training = ir::build_training_graph(graph);
  ref::Trainer trainer(training, model::random_weights(graph, 1));
  Data d = data(config.vocab_size, 4);
  d.targets[3] = static_cast<int32_t>(config.vocab_size);
  EXPECT_THROW(trainer.loss(d.batch()), Error);
  d = data(config.vocab_size, 4);
  d.inputs.pop_back(), d.targets.pop_back();
  EXPECT_THROW(trainer.loss(d.batch()), Error) << "7 tokens do not split into 2 sequences";
}

// bf16 training rounds every matrix product's operands and result (fp32 accumulation) and keeps
// fp32 master weights: its gradients are the fp32 ones to bf16's 8 bits (not equal, not far), and
// the updated weights are not all bf16 values.
TEST(Trainer, Bf16RoundsMatrixProductsAndKeepsFp32MasterWeights) {
  const auto config = tiny("gpt2-tiny.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto training = ir::build_training_graph(graph);
  const auto weights = model::random_weights(graph, 3);
  const Data d = data(config.vocab_size, 12);
  ref::Trainer fp32(training, weights), bf16(training, weights, {.compute = FloatFormat::BF16});
  const double loss32 = fp32.compute_gradients(d.batch()), loss16 = bf16.compute_gradients(d.batch());
  EXPECT_NE(loss32, loss16);
  EXPECT_NEAR(loss16, loss32, 0.01 * loss32);
  double differ = 0, norm = 0;
  for (const auto& name : training.parameters) {
    const auto a = fp32.gradient(name), b = bf16.gradient(name);
    for (size_t i = 0; i < a.size(); ++i) differ += std::pow(a[i] - b[i], 2), norm += std::pow(a[i], 2);
  }
  EXPECT_GT(std::sqrt(differ / norm), 1e-4) << "the rounding shows";
  EXPECT_LT(std::sqrt(differ / norm), 0.05) << "but only at bf16's precision";
  const std::vector<ref::Batch> one = {d.batch()};
  bf16.step(one, 1e-3);
  const model::Weights after = bf16.weights();
  const auto& w = after.at("h.0.mlp.c_fc.weight").values;
  EXPECT_TRUE(std::any_of(w.begin(), w.end(), [](float v) { return v != round_to_format(v, FloatFormat::BF16); }))
      << "the master weights stay fp32";
}

// fp16's dynamic loss scaling, as PyTorch's GradScaler: a step whose scaled gradients overflow is
// skipped (weights untouched) and halves the scale; after growth_interval clean steps it doubles.
TEST(Trainer, Fp16LossScalingSkipsOverflowsAndGrowsBack) {
  const auto config = tiny("gpt2-tiny.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto training = ir::build_training_graph(graph);
  const auto weights = model::random_weights(graph, 3);
  const Data d = data(config.vocab_size, 12);
  const std::vector<ref::Batch> one = {d.batch()};
  ref::Trainer trainer(
      training, weights,
      {.compute = FloatFormat::F16, .loss_scaling = true, .initial_loss_scale = 0x1p40, .growth_interval = 2});
  const ref::StepResult first = trainer.step(one, 1e-3);
  EXPECT_TRUE(first.skipped) << "2^40 x the loss overflows fp16's 65,504";
  EXPECT_EQ(first.loss_scale, 0x1p40);
  EXPECT_EQ(trainer.loss_scale(), 0x1p39);
  EXPECT_EQ(trainer.steps_done(), 0);
  EXPECT_EQ(trainer.weights().at("wte.weight").values, weights.at("wte.weight").values);
  int skipped = 1;
  while (trainer.step(one, 1e-3).skipped) ++skipped;
  EXPECT_GT(skipped, 10) << "the scale halves until the gradients fit";
  EXPECT_LT(trainer.loss_scale(), 0x1p30);
  const double settled = trainer.loss_scale();
  EXPECT_FALSE(trainer.step(one, 1e-3).skipped);
  EXPECT_EQ(trainer.loss_scale(), 2 * settled) << "two clean steps double it";
  EXPECT_EQ(trainer.steps_done(), 2);
  EXPECT_NE(trainer.weights().at("wte.weight").values, weights.at("wte.weight").values);
}
