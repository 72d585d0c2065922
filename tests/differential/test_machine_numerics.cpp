// GPU and IPU values: the reference arithmetic in the order a compiled plan splits it (split-K
// partial sums, tensor-parallel partial sums, blocked softmax) against the unsplit reference:
// logits within fp32 tolerance, identical greedy tokens, and not bit-identical (the split is real).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/exchange/exchange_compiler.hpp"
#include "tessera/target/partitioning.hpp"
#include "tessera/target/shared_memory/gpu_compiler.hpp"

using namespace tessera;

namespace {

const std::string kRoot = TESSERA_SOURCE_DIR;

struct Model {
  ir::ModelConfig config;
  std::string yaml, path;
  ir::Graph graph;
  model::Weights weights;
};

Model load(const std::string& name) {
  Model m;
  m.path = kRoot + "/configs/models/" + name + ".yaml";
  if (name == "default") m.path = kRoot + "/models/default/config.yaml";
  m.config = ir::load_model_config(m.path);
  m.yaml = read_text_file(m.path);
  m.graph = ir::build_model_graph(m.config);
  m.weights =
      m.config.weights_path ? model::load_weights(m.graph, *m.config.weights_path) : model::random_weights(m.graph, 3);
  return m;
}

arch::ArchSpec preset(const std::string& name, std::string& yaml, std::string& path) {
  path = kRoot + "/configs/arch/" + name + ".yaml";
  yaml = read_text_file(path);
  return target::parse_arch(yaml, path);
}

// Logits of every position of a 24-token prompt, then 8 greedy tokens, split vs unsplit.
void expect_close_but_split(const Model& m, const ref::Partitioning& split, const std::string& what) {
  std::vector<int32_t> prompt(24);
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<int32_t>((i * 131 + 7) % static_cast<size_t>(m.config.vocab_size));
  ref::ReferenceExecutor plain(m.graph, m.weights, m.config.context_length);
  ref::ReferenceExecutor machine(m.graph, m.weights, m.config.context_length, {}, split);
  const auto want_span = plain.forward(prompt);
  const std::vector<float> expected(want_span.begin(), want_span.end());
  const auto got = machine.forward(prompt);
  double err = 0, scale = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    err = std::max(err, static_cast<double>(std::abs(got[i] - expected[i])));
    scale = std::max(scale, static_cast<double>(std::abs(expected[i])));
  }
  EXPECT_LT(err / scale, 1e-5) << what;
  EXPECT_GT(err, 0.0) << what << ": the partitioned arithmetic should not be bit-identical";
  plain.reset(), machine.reset();
  ref::GenerationOptions options;
  options.max_new_tokens = 8;
  EXPECT_EQ(ref::generate(machine, prompt, options).tokens, ref::generate(plain, prompt, options).tokens) << what;
}

}  // namespace

TEST(MachineNumerics, IpuPlanSplitsMatchTheReference) {
  const Model m = load("default");
  std::string yaml, path;
  const auto a = preset("gc200", yaml, path);
  const auto plan =
      compiler::compile_for_exchange(m.config, m.yaml, m.path, a, yaml, path, {24, 8, 1, PrecisionPolicy{}});
  ASSERT_TRUE(plan.status) << plan.status.message();
  const ref::Partitioning split = sim::partitioning(plan.plan, m.graph);
  EXPECT_GT(split.position_block, 0) << "4 heads over 1,472 tiles: each pair's positions are spread";
  expect_close_but_split(m, split, "gc200");
}

TEST(MachineNumerics, GpuPlanSplitsMatchTheReference) {
  const Model m = load("gpt2-small");
  std::string yaml, path;
  const auto a = preset("a100", yaml, path);
  for (const int64_t tp : {1, 2}) {
    const auto plan =
        compiler::compile_for_gpu(m.config, m.yaml, m.path, a, yaml, path, {24, 8, 1, tp, PrecisionPolicy{}});
    ASSERT_TRUE(plan.status) << plan.status.message();
    const ref::Partitioning split = sim::partitioning(plan.plan, m.graph);
    // Decode GEMMs of one token are split over K to fill the SMs (each SM's share of L2 bounds
    // what one streams).
    EXPECT_TRUE(std::any_of(split.k_parts_decode.begin(), split.k_parts_decode.end(),
                            [](const auto& e) { return e.second > 1; }));
    expect_close_but_split(m, split, "a100 tp " + std::to_string(tp));
  }
}

TEST(MachineNumerics, HandWrittenSplitsAndBadNames) {
  const Model m = load("default");
  ref::Partitioning split;
  split.k_parts["h.0.mlp.c_fc.weight"] = 3;  // 256 inputs in parts of 86, 86 and 84
  split.k_parts["wte.weight"] = 7;           // the tied LM head
  split.position_block = 5;
  expect_close_but_split(m, split, "hand-written");
  ref::Partitioning bad;
  bad.k_parts["h.0.mlp.nonexistent.weight"] = 2;
  EXPECT_THROW(ref::ReferenceExecutor(m.graph, m.weights, 64, {}, bad), Error);
  ref::Partitioning zero;
  zero.k_parts["wte.weight"] = 0;
  EXPECT_THROW(ref::ReferenceExecutor(m.graph, m.weights, 64, {}, zero), Error);
}
