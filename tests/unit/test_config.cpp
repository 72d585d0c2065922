#include <gtest/gtest.h>

#include "tessera/base/error.hpp"
#include "tessera/config/yaml_reader.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/model/model_package.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

namespace {

const char* kGood = R"(name: t
family: gpt2
vocab_size: 10
context_length: 8
d_model: 16
n_layers: 1
n_heads: 2
d_ff: 64
norm_eps: 1.0e-5
tie_embeddings: true
)";

}  // namespace

TEST(YamlReader, UnknownKeyNamesFileKeyAndLine) {
  const std::string msg = error_of([] { ir::parse_model_config(std::string(kGood) + "n_layer: 3\n", "m.yaml"); });
  EXPECT_NE(msg.find("m.yaml:11: key 'n_layer'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n_layers"), std::string::npos) << "should list the known keys: " << msg;
}

TEST(YamlReader, WrongTypeSaysWhatWasExpected) {
  std::string text = kGood;
  text.replace(text.find("n_layers: 1"), 11, "n_layers: twelve");
  const std::string msg = error_of([&] { ir::parse_model_config(text, "m.yaml"); });
  EXPECT_NE(msg.find("key 'n_layers': expected an integer, got 'twelve'"), std::string::npos) << msg;
}

TEST(YamlReader, NegativeAndMissingValues) {
  std::string text = kGood;
  text.replace(text.find("d_ff: 64"), 8, "d_ff: -4");
  EXPECT_NE(error_of([&] { ir::parse_model_config(text, "m.yaml"); }).find("must be a positive integer, got -4"),
            std::string::npos);
  text = kGood;
  text.erase(text.find("d_model: 16\n"), 12);
  EXPECT_NE(error_of([&] { ir::parse_model_config(text, "m.yaml"); }).find("key 'd_model': missing required key"),
            std::string::npos);
}

TEST(YamlReader, MalformedYamlReportsLineAndColumn) {
  const std::string msg = error_of([] { config::YamlMap::parse_string("a: [1, 2\nb: 3\n", "bad.yaml"); });
  EXPECT_NE(msg.find("bad.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { config::YamlMap::parse_string("- 1\n- 2\n", "list.yaml"); }).find("expected a YAML mapping"),
            std::string::npos);
  EXPECT_NE(error_of([] { config::YamlMap::parse_string("", "empty.yaml"); }).find("empty"), std::string::npos);
}

TEST(YamlReader, NestedKeysUseDottedPaths) {
  const auto map = config::YamlMap::parse_string("outer:\n  inner: 1\n  typo: 2\n", "n.yaml");
  const auto inner = map.map("outer");
  EXPECT_EQ(inner.integer("inner"), 1);
  EXPECT_NE(error_of([&] { inner.finish(); }).find("key 'outer.typo'"), std::string::npos);
}

TEST(ModelConfig, ShapeConsistencyIsChecked) {
  std::string text = kGood;
  text.replace(text.find("n_heads: 2"), 10, "n_heads: 3");
  EXPECT_NE(error_of([&] { ir::parse_model_config(text, "m.yaml"); }).find("not divisible by n_heads"),
            std::string::npos);
  text = kGood;
  text.replace(text.find("family: gpt2"), 12, "family: t5");
  EXPECT_NE(error_of([&] { ir::parse_model_config(text, "m.yaml"); }).find("unknown family 't5'"), std::string::npos);
  // BERT needs its token types; a decoder has none.
  text = kGood;
  text.replace(text.find("family: gpt2"), 12, "family: bert");
  EXPECT_NE(error_of([&] { ir::parse_model_config(text, "m.yaml"); }).find("'type_vocab_size'"), std::string::npos);
  EXPECT_TRUE(ir::parse_model_config(text + "type_vocab_size: 2\n", "m.yaml").is_encoder());
  EXPECT_NE(error_of([&] {
              ir::parse_model_config(kGood + std::string("type_vocab_size: 2\n"), "m.yaml");
            }).find("token types are BERT's"),
            std::string::npos);
  // Sizes beyond any model are refused before a graph is built (they ran for minutes or overflowed).
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"n_layers: 1", "n_layers: 1000000000"},
                                                        {"d_model: 16", "d_model: 4611686018427387904"},
                                                        {"vocab_size: 10", "vocab_size: 100000000000"},
                                                        {"context_length: 8", "context_length: 100000000000"}}) {
    std::string big = kGood;
    big.replace(big.find(from), from.size(), to);
    const std::string key = from.substr(0, from.find(':'));
    const std::string message = error_of([&] { ir::parse_model_config(big, "m.yaml"); });
    EXPECT_NE(message.find("key '" + key + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("larger than any model tessera simulates"), std::string::npos) << message;
  }
}

// Published parameter counts (Hugging Face model cards / summing the checkpoints' tensors).
TEST(ModelConfig, ShippedConfigsHaveThePublishedParameterCounts) {
  const std::map<std::string, int64_t> expected = {
      {"gpt2-small", 124'439'808},
      {"gpt2-medium", 354'823'168},
      {"gpt2-large", 774'030'080},
      {"gpt2-xl", 1'557'611'200},
      {"llama3-8b", 8'030'261'248},
      {"llama3-70b", 70'553'706'496},
      {"mixtral-8x7b", 46'702'792'704},  // "46.7B total, 12.9B active" (Jiang et al. 2024)
      // BertForMaskedLM (no pooler): bert-base-uncased and bert-large-uncased as PyTorch counts them.
      {"bert-base", 109'514'298},
      {"bert-large", 335'174'458},
  };
  for (const auto& [name, params] : expected) {
    const auto config = ir::load_model_config(model::resolve_model_config(name, TESSERA_SOURCE_DIR));
    const auto graph = ir::build_model_graph(config);
    EXPECT_TRUE(graph.verify().is_ok()) << name << ": " << graph.verify().message();
    EXPECT_EQ(graph.parameter_count(), params) << name;
    // A token uses 2 of Mixtral's 8 experts per layer: 6 x 3 x 4,096 x 14,336 x 32 weights idle.
    EXPECT_EQ(graph.active_parameter_count(), name == "mixtral-8x7b" ? params - 6 * 3 * 4096LL * 14336 * 32 : params)
        << name;
  }
}

TEST(ModelConfig, EveryShippedModelLoadsAndBuilds) {
  const auto entries = model::list_models(TESSERA_SOURCE_DIR);
  ASSERT_GE(entries.size(), 7u);
  for (const auto& entry : entries) {
    const auto config = ir::load_model_config(entry.config_path);
    EXPECT_TRUE(ir::build_model_graph(config).verify().is_ok()) << entry.name;
  }
  EXPECT_NE(error_of([] { model::resolve_model_config("gpt3", TESSERA_SOURCE_DIR); }).find("unknown model 'gpt3'"),
            std::string::npos);
}
