// GPT-2 style byte-level BPE: loads encoder.json + vocab.bpe (the files GPT-2 ships) and encodes
// any byte string, valid UTF-8 or not; decode(encode(s)) == s for every s. Also BERT's WordPiece
// (load_wordpiece), which normalises text and so does not round-trip it.
//
// Pre-tokenization follows GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as a hand-written scanner over UTF-8: \p{L} and \p{N} come from Unicode tables
// (src/model/unicode_tables.inc, generated), \s is the White_Space property, and each byte of
// invalid UTF-8 counts as punctuation. A tokenizer.json may instead split as Llama 3 does
// (tiktoken's cl100k-style pattern, with a separate scanner):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// (case-insensitive contractions in ASCII letters only).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tessera::model {

class Tokenizer {
 public:
  static Tokenizer load(const std::filesystem::path& encoder_json, const std::filesystem::path& merges);
  // A Hugging Face tokenizer.json of the same kind: a byte-level BPE model with GPT-2's
  // pre-tokenizer (ByteLevel, its regex, no added prefix space) or Llama 3's (a Split on the
  // pattern above, then ByteLevel without its regex); its added tokens are appended, and
  // `ignore_merges` (a pre-token that is itself in the vocabulary is one token) is honoured.
  // Throws Error naming the field for any other model, normalizer or pre-tokenizer.
  static Tokenizer load_hf(const std::filesystem::path& tokenizer_json);
  // BERT's WordPiece (a vocab.txt, one token per line, its line number the id), as Hugging Face's
  // BertTokenizer splits text: control characters dropped, CJK ideographs set apart, whitespace
  // and punctuation split, optionally lower-cased with accents stripped, then each word the
  // longest vocabulary prefix first, the rest as "##" pieces ([UNK] for a word that does not
  // split, or of over 100 characters). The special tokens [CLS], [SEP], [MASK], [PAD] and [UNK]
  // written in the text are those tokens. Lower-casing and accent stripping cover ASCII and
  // Latin-1; punctuation outside ASCII is every character that is not a letter, number or space.
  static Tokenizer load_wordpiece(const std::filesystem::path& vocab_txt, bool lowercase);

  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(std::span<const int32_t> ids) const;
  const std::string& token_bytes(int32_t id) const;
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_bytes_.size()); }
  std::optional<int32_t> end_of_text() const { return end_of_text_; }
  bool is_wordpiece() const { return wordpiece_; }
  // The id of a special token ("[MASK]", "[CLS]", ...) the vocabulary holds.
  std::optional<int32_t> special(std::string_view token) const;

 private:
  struct Merge {
    std::string left, right, where;  // byte-level symbols, and where the merge was read
  };
  // From a vocabulary of (byte-level symbol, id) read from `origin` and ranked merges.
  static Tokenizer build(const std::vector<std::pair<std::string, int64_t>>& vocab, const std::string& origin,
                         const std::vector<Merge>& merges);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_wordpiece(std::string_view text, std::vector<int32_t>& out) const;

  std::vector<std::string> id_to_bytes_;
  std::unordered_map<std::string, int32_t> bytes_to_id_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> end_of_text_;
  bool llama3_split_ = false;  // Llama 3's pre-tokenizer instead of GPT-2's
  bool ignore_merges_ = false;
  bool wordpiece_ = false, lowercase_ = false;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Splits text into GPT-2 pre-tokens, or Llama 3's (exposed for tests).
std::vector<std::string_view> pretokenize(std::string_view text);
std::vector<std::string_view> pretokenize_llama3(std::string_view text);

}  // namespace tessera::model
