#include <gtest/gtest.h>

#include <cmath>

#include "tessera/base/error.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/generate.hpp"

using namespace tessera;

namespace {

struct Fixture {
  ir::ModelConfig config;
  ir::Graph graph;
  model::Weights weights;
};

Fixture make(const std::string& config_path) {
  Fixture f;
  f.config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + config_path);
  f.graph = ir::build_model_graph(f.config);
  f.weights = model::random_weights(f.graph, 1);
  return f;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

// Decoding from the KV cache must give the logits that a full recompute gives.
TEST(ReferenceExecutor, KvCacheMatchesFullRecompute) {
  for (const char* path : {"/tests/data/llama-tiny.yaml", "/models/default/config.yaml"}) {
    Fixture f = make(path);
    const std::vector<int32_t> tokens = {5, 17, 3, 99, 42, 7, 250, 1, 64, 8};
    ref::ReferenceExecutor full(f.graph, f.weights, f.config.context_length);
    const auto all = full.forward(tokens);
    const auto vocab = static_cast<size_t>(f.config.vocab_size);
    ASSERT_EQ(all.size(), tokens.size() * vocab);
    const std::vector<float> last_full(all.end() - static_cast<std::ptrdiff_t>(vocab), all.end());

    ref::ReferenceExecutor step(f.graph, f.weights, f.config.context_length);
    step.forward(std::span(tokens).first(6));
    for (size_t i = 6; i + 1 < tokens.size(); ++i) step.forward(std::span(tokens).subspan(i, 1));
    const auto last_step = step.forward(std::span(tokens).last(1), true);
    EXPECT_EQ(step.position(), 10);
    EXPECT_LT(max_abs_diff(last_full, last_step), 1e-4f) << path;
  }
}

TEST(ReferenceExecutor, RejectsContextOverflowAndBadTokens) {
  Fixture f = make("/tests/data/llama-tiny.yaml");
  ref::ReferenceExecutor ex(f.graph, f.weights, 8);
  EXPECT_THROW(ex.forward(std::vector<int32_t>(9, 1)), Error);
  EXPECT_THROW(ex.forward(std::vector<int32_t>{1, 512}), Error) << "vocab is 512";
  ref::GenerationOptions options;
  options.max_new_tokens = 5;
  try {
    ref::generate(ex, std::vector<int32_t>(5, 1), options);
    FAIL() << "5 prompt + 5 new tokens need 9 positions of 8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use at most 4 new tokens"), std::string::npos) << e.what();
  }
  options.max_new_tokens = 4;
  EXPECT_EQ(ref::generate(ex, std::vector<int32_t>(5, 1), options).tokens.size(), 4u);
  EXPECT_THROW(ref::generate(ex, std::vector<int32_t>{}, options), Error);
}

TEST(Sampler, GreedyTopKAndSeeds) {
  const std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 2.0f};
  ref::Sampler greedy({});
  EXPECT_EQ(greedy.pick(logits), 1) << "argmax, lowest id on ties";
  ref::Sampler top1({1.0, 1, 9});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(top1.pick(logits), 1);
  ref::Sampler a({1.0, 0, 123}), b({1.0, 0, 123}), c({1.0, 0, 124});
  std::vector<int32_t> sa, sb, sc;
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 2000; ++i) {
    sa.push_back(a.pick(logits));
    sb.push_back(b.pick(logits));
    sc.push_back(c.pick(logits));
    ++counts[static_cast<size_t>(sa.back())];
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  // softmax(logits): p(1) = e^2 / 22.94 = 0.322, p(3) = e^-1 / 22.94 = 0.016
  EXPECT_NEAR(counts[1] / 2000.0, 0.322, 0.04);
  EXPECT_NEAR(counts[3] / 2000.0, 0.016, 0.01);
  ref::Sampler top2({1.0, 2, 5});
  for (int i = 0; i < 200; ++i) {
    const int32_t t = top2.pick(logits);
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
  EXPECT_THROW(ref::Sampler({-1.0, 0, 0}), Error);
}
