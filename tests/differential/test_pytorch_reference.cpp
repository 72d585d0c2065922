// The reference executor against PyTorch (tests/data/reference/*.json, written by
// tools/gen_reference.py). Logits must agree to a small relative error (max |difference| over
// max |reference| per position), the full-vocabulary logsumexp and argmax must agree, and greedy
// generation through the KV cache must reproduce PyTorch's tokens exactly.
//
// The tolerance is 1e-5, tighter than the 1e-4 the issue asks for: the observed error is 1.3e-6
// (OpenBLAS vs PyTorch summation order), and 1e-5 still catches a GELU cubic coefficient of 0.0447
// instead of 0.044715 (error 5.9e-5), which 1e-4 would let through.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/ir/builders.hpp"
#include "tessera/model/tokenizer.hpp"
#include "tessera/ref/generate.hpp"

using namespace tessera;

namespace {

constexpr double kRelativeTolerance = 1e-5;

void check_against_pytorch(const std::string& case_name) {
  const std::string root = TESSERA_SOURCE_DIR;
  std::ifstream in(root + "/tests/data/reference/" + case_name + ".json");
  ASSERT_TRUE(in) << case_name;
  const auto ref = nlohmann::json::parse(in);
  const auto config = ir::load_model_config(root + "/" + ref["model"].get<std::string>());
  const auto graph = ir::build_model_graph(config);
  const auto weights = ref["weights"] == "random" ? model::random_weights(graph, ref["seed"].get<uint64_t>())
                                                  : model::load_weights(graph, *config.weights_path);
  ref::ReferenceExecutor executor(graph, weights, config.context_length);
  const auto vocab = static_cast<size_t>(config.vocab_size);

  for (const auto& c : ref["cases"]) {
    const auto tokens = c["tokens"].get<std::vector<int32_t>>();
    if (c.contains("prompt")) {
      const auto tok = model::Tokenizer::load(*config.encoder_path, *config.merges_path);
      EXPECT_EQ(tok.encode(c["prompt"].get<std::string>()), tokens) << "tokenizer disagrees with tools/bpe.py";
    }
    executor.reset();
    const auto logits = executor.forward(tokens);
    const auto ids = c["logit_ids"].get<std::vector<size_t>>();
    for (size_t pos = 0; pos < tokens.size(); ++pos) {
      const auto row = logits.subspan(pos * vocab, vocab);
      const auto expected = c["logits"][pos].get<std::vector<double>>();
      double max_err = 0, max_ref = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        max_err = std::max(max_err, std::abs(row[ids[i]] - expected[i]));
        max_ref = std::max(max_ref, std::abs(expected[i]));
      }
      EXPECT_LE(max_err / max_ref, kRelativeTolerance) << case_name << " position " << pos;
      const float top = *std::max_element(row.begin(), row.end());
      double sum = 0;
      for (float v : row) sum += std::exp(static_cast<double>(v) - top);
      EXPECT_NEAR(top + std::log(sum), c["logsumexp"][pos].get<double>(), kRelativeTolerance * std::max(1.0, max_ref))
          << case_name << " position " << pos;
      EXPECT_EQ(std::max_element(row.begin(), row.end()) - row.begin(), c["argmax"][pos].get<int64_t>())
          << case_name << " position " << pos;
    }
    ref::GenerationOptions options;
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    options.max_new_tokens = static_cast<int64_t>(greedy.size());
    EXPECT_EQ(ref::generate(executor, tokens, options).tokens, greedy) << case_name;
  }
}

}  // namespace

TEST(PyTorchReference, DefaultModel) { check_against_pytorch("default"); }
TEST(PyTorchReference, Gpt2SmallRandomWeights) { check_against_pytorch("gpt2-small-random"); }
TEST(PyTorchReference, LlamaTinyRandomWeights) { check_against_pytorch("llama-tiny-random"); }
// Mixtral's block-sparse mixture of experts (4 experts, 2 per token; the reference's smallest gap
// between a token's 2nd and 3rd router logit is 0.19, so no routing decision is a near tie).
TEST(PyTorchReference, MixtralTinyRandomWeights) { check_against_pytorch("mixtral-tiny-random"); }

// BertForMaskedLM (tests/data/hf/bert, written by tools/gen_bert_dir.py): the directory's
// WordPiece ids equal the BertTokenizer algorithm's, the logits at [CLS] and each [MASK] equal
// PyTorch's, and so do the five most likely tokens at each mask. A causal mask, the tanh GELU,
// pre-LayerNorm blocks or a missing token-type row would each move the logits far past the bound.
TEST(PyTorchReference, BertMaskedLm) {
  const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/bert";
  std::ifstream in(dir + "/expected.json");
  ASSERT_TRUE(in);
  const auto expected = nlohmann::json::parse(in);
  const auto config = ir::load_model_config(dir + "/config.json");
  ASSERT_TRUE(config.is_encoder());
  ASSERT_TRUE(config.wordpiece_path && config.lowercase);
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::load_weights(graph, *config.weights_path);
  const auto tokenizer = model::Tokenizer::load_wordpiece(*config.wordpiece_path, config.lowercase);
  for (const auto& c : expected["tokenizer"])
    EXPECT_EQ(tokenizer.encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>()) << c["text"];
  ref::ReferenceExecutor executor(graph, weights, config.context_length);
  const auto vocab = static_cast<size_t>(config.vocab_size);
  const int32_t mask = *tokenizer.special("[MASK]");
  for (const auto& p : expected["prompts"]) {
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> encoded = {*tokenizer.special("[CLS]")};
    for (int32_t id : tokenizer.encode(p["prompt"].get<std::string>())) encoded.push_back(id);
    encoded.push_back(*tokenizer.special("[SEP]"));
    EXPECT_EQ(encoded, ids);
    executor.reset();
    const auto logits = executor.forward(ids);
    for (const auto& [position, row] : p["logits"].items()) {
      const auto expected_row = row.get<std::vector<double>>();
      const auto got = logits.subspan(std::stoul(position) * vocab, vocab);
      double max_err = 0, max_ref = 0;
      for (size_t i = 0; i < vocab; ++i)
        max_err = std::max(max_err, std::abs(got[i] - expected_row[i])),
        max_ref = std::max(max_ref, std::abs(expected_row[i]));
      EXPECT_LE(max_err / max_ref, kRelativeTolerance) << "position " << position;
    }
    const auto filled = ref::fill_masks(executor, ids, mask);
    ASSERT_EQ(filled.masks.size(), p["masks"].size());
    for (size_t m = 0; m < filled.masks.size(); ++m) {
      EXPECT_EQ(filled.masks[m].position, p["masks"][m].get<int64_t>());
      EXPECT_EQ(filled.masks[m].ids, p["top5"][m].get<std::vector<int32_t>>());
      EXPECT_GT(filled.masks[m].probabilities[0], filled.masks[m].probabilities[4]);
    }
  }
}
