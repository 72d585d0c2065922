#include "tessera/model/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"

namespace tessera::model {

namespace {

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 onwards.
std::array<uint32_t, 256> byte_to_codepoint() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[static_cast<size_t>(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[static_cast<size_t>(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[static_cast<size_t>(b)] = true;
  uint32_t next = 256;
  for (size_t b = 0; b < 256; ++b) map[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
  return map;
}

enum class CharClass { Letter, Number, Space, Other };

struct CodepointRange {
  uint32_t first, last;
};
#include "unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodepointRange (&ranges)[N], uint32_t cp) {
  const auto it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                   [](uint32_t c, const CodepointRange& r) { return c < r.first; });
  return it != std::begin(ranges) && cp <= std::prev(it)->last;
}

// The Unicode White_Space property.
bool is_space(uint32_t cp) {
  return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

CharClass classify(uint32_t cp) {
  if (is_space(cp)) return CharClass::Space;
  if (in_ranges(kLetterRanges, cp)) return CharClass::Letter;
  if (in_ranges(kNumberRanges, cp)) return CharClass::Number;
  return CharClass::Other;
}

// Decodes one UTF-8 code point at `pos`; invalid or truncated sequences yield one byte of class Other.
struct Char {
  size_t length;
  CharClass cls;
};

Char char_at(std::string_view s, size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return {1, classify(b0)};
  int n = b0 >= 0xF0 && b0 <= 0xF4 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 && b0 < 0xE0 ? 2 : 0;
  if (b0 >= 0xF5) n = 0;
  if (n == 0 || pos + static_cast<size_t>(n) > s.size()) return {1, CharClass::Other};
  uint32_t cp = b0 & (0x7Fu >> n);
  for (int i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + static_cast<size_t>(i)]);
    if ((b & 0xC0) != 0x80) return {1, CharClass::Other};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  const uint32_t min_cp = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {1, CharClass::Other};
  return {static_cast<size_t>(n), classify(cp)};
}

// Llama 3's pre-tokenizer pattern, as its tokenizer.json spells it.
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr std::array<std::string_view, 7> kContractions = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};

std::string encode_utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

bool is_line_break(std::string_view text, size_t pos) { return text[pos] == '\r' || text[pos] == '\n'; }

// The end of the run of characters of class `cls` starting at `pos`, at most `limit` of them.
size_t run_end(std::string_view text, size_t pos, CharClass cls, size_t limit = SIZE_MAX) {
  for (size_t count = 0; pos < text.size() && count < limit; ++count) {
    const Char c = char_at(text, pos);
    if (c.cls != cls) break;
    pos += c.length;
  }
  return pos;
}

// Case-insensitive English contractions ('s 't 're 've 'm 'll 'd, ASCII letters) at `pos`: their length, or 0.
size_t contraction_at(std::string_view text, size_t pos) {
  if (text[pos] != '\'') return 0;
  for (std::string_view c : kContractions) {
    if (pos + c.size() > text.size()) continue;
    bool same = true;
    for (size_t k = 1; k < c.size() && same; ++k)
      same = std::tolower(static_cast<unsigned char>(text[pos + k])) == c[k];
    if (same) return c.size();
  }
  return 0;
}

// \s+(?!\S)|\s+ at `pos` (a whitespace character): the whitespace run, less its last character
// when a non-space follows (that character starts the next piece).
size_t spaces_end(std::string_view text, size_t pos) {
  const size_t end = run_end(text, pos, CharClass::Space);
  size_t last_start = pos;
  for (size_t p = pos; p < end; p += char_at(text, p).length) last_start = p;
  return end < text.size() && last_start > pos ? last_start : end;
}

}  // namespace

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    bool matched = false;
    for (auto c : kContractions) {
      if (text.substr(i, c.size()) == c) {
        out.push_back(text.substr(i, c.size()));
        i += c.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;
    size_t j = i;
    if (text[i] == ' ' && i + 1 < n && char_at(text, i + 1).cls != CharClass::Space) j = i + 1;
    const CharClass cls = char_at(text, j).cls;
    const size_t e = cls != CharClass::Space ? run_end(text, j, cls) : spaces_end(text, i);
    out.push_back(text.substr(i, e - i));
    i = e;
  }
  return out;
}

std::vector<std::string_view> pretokenize_llama3(std::string_view text) {
  std::vector<std::string_view> out;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const Char first = char_at(text, i);
    size_t e = i;
    if (const size_t c = contraction_at(text, i)) {
      e = i + c;
    } else if (first.cls == CharClass::Letter) {  // \p{L}+
      e = run_end(text, i, CharClass::Letter);
    } else if (!is_line_break(text, i) && first.cls != CharClass::Number && i + first.length < n &&
               char_at(text, i + first.length).cls == CharClass::Letter) {  // [^\r\n\p{L}\p{N}]\p{L}+
      e = run_end(text, i + first.length, CharClass::Letter);
    } else if (first.cls == CharClass::Number) {  // \p{N}{1,3}
      e = run_end(text, i, CharClass::Number, 3);
    } else if (const size_t start =
                   text[i] == ' ' && i + 1 < n && char_at(text, i + 1).cls == CharClass::Other ? i + 1 : i;
               char_at(text, start).cls == CharClass::Other) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
      e = run_end(text, start, CharClass::Other);
      while (e < n && is_line_break(text, e)) ++e;
    } else {  // whitespace: \s*[\r\n]+, then \s+(?!\S), then \s+
      const size_t space_end = run_end(text, i, CharClass::Space);
      size_t last_break = SIZE_MAX;
      for (size_t pos = i; pos < space_end; pos += char_at(text, pos).length)
        if (is_line_break(text, pos)) last_break = pos;
      e = last_break != SIZE_MAX ? last_break + 1 : spaces_end(text, i);
    }
    out.push_back(text.substr(i, e - i));
    i = e;
  }
  return out;
}

Tokenizer Tokenizer::build(const std::vector<std::pair<std::string, int64_t>>& vocab, const std::string& origin,
                           const std::vector<Merge>& merges) {
  const auto b2c = byte_to_codepoint();
  std::unordered_map<std::string, unsigned char> symbol_to_byte;
  for (size_t b = 0; b < 256; ++b) symbol_to_byte[encode_utf8(b2c[b])] = static_cast<unsigned char>(b);
  auto to_bytes = [&](const std::string& symbol, const std::string& where) {
    std::string bytes;
    for (size_t pos = 0; pos < symbol.size();) {
      const auto b0 = static_cast<unsigned char>(symbol[pos]);
      const size_t len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : 3;
      const auto it = symbol_to_byte.find(symbol.substr(pos, len));
      if (it == symbol_to_byte.end()) fail("{}: token '{}' is not in GPT-2's byte alphabet", where, symbol);
      bytes += static_cast<char>(it->second);
      pos += len;
    }
    return bytes;
  };

  Tokenizer t;
  t.id_to_bytes_.resize(vocab.size());
  std::vector<bool> seen(vocab.size(), false);
  for (const auto& [symbol, id_value] : vocab) {
    if (id_value < 0 || static_cast<size_t>(id_value) >= vocab.size())
      fail("{}: token '{}' has id {}; ids must be 0..{}", origin, symbol, id_value, vocab.size() - 1);
    const auto id = static_cast<size_t>(id_value);
    if (seen[id]) fail("{}: id {} is used twice", origin, id);
    seen[id] = true;
    t.id_to_bytes_[id] = to_bytes(symbol, origin);
    t.bytes_to_id_[t.id_to_bytes_[id]] = static_cast<int32_t>(id);
    if (symbol == "<|endoftext|>") t.end_of_text_ = static_cast<int32_t>(id);
  }
  for (size_t b = 0; b < 256; ++b)
    if (!t.bytes_to_id_.contains(std::string(1, static_cast<char>(b))))
      fail("{}: byte 0x{:02x} has no token; a byte-level BPE vocabulary needs all 256", origin, b);
  int32_t rank = 0;
  for (const Merge& merge : merges) {
    const std::string left = to_bytes(merge.left, merge.where), right = to_bytes(merge.right, merge.where);
    const auto l = t.bytes_to_id_.find(left), r = t.bytes_to_id_.find(right), m = t.bytes_to_id_.find(left + right);
    if (l == t.bytes_to_id_.end() || r == t.bytes_to_id_.end() || m == t.bytes_to_id_.end())
      fail("{}: merge '{} {}' uses or makes a token missing from {}", merge.where, merge.left, merge.right, origin);
    const uint64_t key = (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    t.merges_.emplace(key, std::pair{rank++, m->second});
  }
  return t;
}

namespace {

std::vector<std::pair<std::string, int64_t>> vocabulary(const nlohmann::json& object, const std::string& origin) {
  if (!object.is_object()) fail("{}: expected a JSON object mapping token strings to ids", origin);
  std::vector<std::pair<std::string, int64_t>> vocab;
  for (const auto& [symbol, id] : object.items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() >= object.size())
      fail("{}: token '{}' has id {}; ids must be 0..{}", origin, symbol, id.dump(), object.size() - 1);
    vocab.emplace_back(symbol, static_cast<int64_t>(id.get<uint64_t>()));
  }
  return vocab;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& encoder_json, const std::filesystem::path& merges) {
  const std::string origin = encoder_json.string();
  const nlohmann::json encoder = nlohmann::json::parse(read_text_file(encoder_json, kTokenizerFile), nullptr, false);
  if (encoder.is_discarded()) fail("{}: expected a JSON object mapping token strings to ids", origin);
  std::vector<Merge> ranked;
  std::istringstream lines(read_text_file(merges, kTokenizerFile));
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const std::string where = fmt::format("{}:{}", merges.string(), line_no);
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      fail("{}: expected two tokens separated by one space", where);
    ranked.push_back({line.substr(0, space), line.substr(space + 1), where});
  }
  return build(vocabulary(encoder, origin), origin, ranked);
}

Tokenizer Tokenizer::load_hf(const std::filesystem::path& tokenizer_json) {
  const std::string origin = tokenizer_json.string();
  const nlohmann::json j = nlohmann::json::parse(read_text_file(tokenizer_json, kTokenizerFile), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: not a tokenizer.json (a JSON object)", origin);
  const auto field = [&](const nlohmann::json& parent, const char* key,
                         const std::string& path) -> const nlohmann::json& {
    if (!parent.is_object() || !parent.contains(key)) fail("{}: field '{}' is missing", origin, path);
    return parent.at(key);
  };
  const nlohmann::json& model = field(j, "model", "model");
  if (field(model, "type", "model.type") != "BPE")
    fail("{}: field 'model.type' is {}; tessera reads byte-level BPE tokenizers", origin, model.at("type").dump());
  if (j.contains("normalizer") && !j.at("normalizer").is_null())
    fail("{}: field 'normalizer' is {}; tessera tokenizes the text as given (no normalizer)", origin,
         j.at("normalizer").dump().substr(0, 120));
  // GPT-2's pre-tokenizer (ByteLevel with its regex, no added prefix space), or Llama 3's: a
  // Split on its pattern (each match a piece), then ByteLevel without a regex of its own.
  const nlohmann::json& pre = field(j, "pre_tokenizer", "pre_tokenizer");
  const auto byte_level = [](const nlohmann::json& p, bool regex) {
    return p.is_object() && p.value("type", "") == "ByteLevel" && p.value("use_regex", true) == regex &&
           !p.value("add_prefix_space", false);
  };
  const auto llama3_split = [](const nlohmann::json& p) {
    return p.is_object() && p.value("type", "") == "Split" && p.value("behavior", "") == "Isolated" &&
           !p.value("invert", false) && p.contains("pattern") && p.at("pattern").is_object() &&
           p.at("pattern").value("Regex", "") == kLlama3Pattern;
  };
  const bool llama3 = pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
                      pre.at("pretokenizers").is_array() && pre.at("pretokenizers").size() == 2 &&
                      llama3_split(pre.at("pretokenizers")[0]) && byte_level(pre.at("pretokenizers")[1], false);
  if (!llama3 && !byte_level(pre, true))
    fail(
        "{}: field 'pre_tokenizer' is {}; tessera splits text as GPT-2 does (ByteLevel, use_regex, no prefix "
        "space) or as Llama 3 does (Sequence of a Split on Llama 3's pattern, Isolated, and ByteLevel without "
        "use_regex), not with other pre-tokenizers",
        origin, pre.dump().substr(0, 160));
  if (model.contains("ignore_merges") && !model.at("ignore_merges").is_boolean())
    fail("{}: field 'model.ignore_merges' must be true or false", origin);
  const bool ignore_merges = model.value("ignore_merges", false);
  std::vector<std::pair<std::string, int64_t>> vocab = vocabulary(field(model, "vocab", "model.vocab"), origin);
  if (j.contains("added_tokens") && j.at("added_tokens").is_array()) {
    std::set<std::string> known;
    for (const auto& [symbol, id] : vocab) known.insert(symbol);
    for (const auto& added : j.at("added_tokens")) {
      const std::string content = added.value("content", "");
      if (known.contains(content)) continue;
      if (!added.contains("id") || added.at("id") != vocab.size())
        fail("{}: added token '{}' must take the next id after the vocabulary ({})", origin, content, vocab.size());
      vocab.emplace_back(content, static_cast<int64_t>(vocab.size()));
      known.insert(content);
    }
  }
  std::vector<Merge> ranked;
  const nlohmann::json& merges = field(model, "merges", "model.merges");
  if (!merges.is_array()) fail("{}: field 'model.merges' must be an array", origin);
  for (size_t i = 0; i < merges.size(); ++i) {
    const nlohmann::json& m = merges[i];
    const std::string where = fmt::format("{}: model.merges[{}]", origin, i);
    if (m.is_string()) {
      const std::string text = m.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        fail("{}: expected two tokens separated by one space", where);
      ranked.push_back({text.substr(0, space), text.substr(space + 1), where});
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      ranked.push_back({m[0].get<std::string>(), m[1].get<std::string>(), where});
    } else {
      fail("{}: expected \"left right\" or [\"left\", \"right\"]", where);
    }
  }
  Tokenizer built = build(vocab, origin, ranked);
  built.llama3_split_ = llama3, built.ignore_merges_ = ignore_merges;
  return built;
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  const std::string key(word);
  if (const auto it = cache_.find(key); it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  if (ignore_merges_) {
    if (const auto whole = bytes_to_id_.find(key); whole != bytes_to_id_.end()) {
      out.push_back(whole->second);
      return;
    }
  }
  std::vector<int32_t> symbols;
  for (char c : word) symbols.push_back(bytes_to_id_.at(std::string(1, c)));
  while (symbols.size() > 1) {
    int32_t best_rank = INT32_MAX, merged = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const uint64_t k = (static_cast<uint64_t>(symbols[i]) << 32) | static_cast<uint32_t>(symbols[i + 1]);
      const auto it = merges_.find(k);
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        merged = it->second.second;
        best = i;
      }
    }
    if (merged < 0) break;
    // Merge every occurrence of the best pair, left to right, as GPT-2 does.
    const int32_t left = symbols[best], right = symbols[best + 1];
    std::vector<int32_t> next;
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        next.push_back(merged);
        ++i;
      } else {
        next.push_back(symbols[i]);
      }
    }
    symbols = std::move(next);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cache_.size() < (1u << 16)) cache_.emplace(key, std::move(symbols));
}

namespace {

constexpr std::array<std::string_view, 5> kWordPieceSpecials = {"[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"};

// One code point of valid UTF-8 at `pos` (its length in `length`); invalid bytes are U+FFFD.
uint32_t codepoint_at(std::string_view s, size_t pos, size_t& length) {
  const Char c = char_at(s, pos);
  length = c.length;
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (c.length == 1) return b0 < 0x80 ? b0 : 0xFFFD;
  uint32_t cp = b0 & (0x7Fu >> c.length);
  for (size_t i = 1; i < c.length; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3Fu);
  return cp;
}

// BertTokenizer's _is_chinese_char ranges (CJK Unified Ideographs and their extensions).
bool is_cjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_punctuation(uint32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
    return true;
  return cp >= 0x80 && classify(cp) == CharClass::Other;
}

// Lower case with accents stripped, for ASCII and Latin-1 letters (others unchanged), as
// BertTokenizer's lower() then NFD without combining marks gives them.
uint32_t fold_latin1(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp < 0xC0 || cp > 0xFF) return cp;
  // U+00C0..U+00FF: the base letter; '.' lower case only (U+00xx + 0x20), '=' unchanged.
  constexpr std::string_view kFolded = "aaaaaa.ceeeeiiii.nooooo=.uuuuy.=aaaaaa=ceeeeiiii=nooooo==uuuuy=y";
  const char folded = kFolded[cp - 0xC0];
  return folded == '.' ? cp + 0x20 : folded == '=' ? cp : static_cast<uint32_t>(folded);
}

}  // namespace

Tokenizer Tokenizer::load_wordpiece(const std::filesystem::path& vocab_txt, bool lowercase) {
  const std::string text = read_text_file(vocab_txt, kTokenizerFile);
  std::vector<std::pair<std::string, int64_t>> vocab;
  Tokenizer t;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto id = static_cast<int32_t>(t.id_to_bytes_.size());
    if (line.empty()) fail("{}: line {} is empty; a vocab.txt holds one token per line", vocab_txt.string(), id + 1);
    if (!t.bytes_to_id_.emplace(line, id).second)
      fail("{}: line {}: token '{}' is already in the vocabulary", vocab_txt.string(), id + 1, line);
    t.id_to_bytes_.push_back(line);
  }
  for (std::string_view special : {"[UNK]", "[CLS]", "[SEP]"})
    if (!t.bytes_to_id_.contains(std::string(special)))
      fail("{}: the vocabulary has no {} token; is this a BERT vocab.txt?", vocab_txt.string(), special);
  t.wordpiece_ = true, t.lowercase_ = lowercase;
  return t;
}

std::optional<int32_t> Tokenizer::special(std::string_view token) const {
  const auto it = bytes_to_id_.find(std::string(token));
  return it == bytes_to_id_.end() ? std::nullopt : std::optional<int32_t>(it->second);
}

void Tokenizer::encode_wordpiece(std::string_view text, std::vector<int32_t>& out) const {
  // Basic tokenization: words split at whitespace and around punctuation and CJK ideographs.
  std::vector<std::string> words;
  std::string word;
  const auto end_word = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  for (size_t pos = 0, length = 0; pos < text.size(); pos += length) {
    uint32_t cp = codepoint_at(text, pos, length);
    if (cp == 0 || cp == 0xFFFD || ((cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) && !is_space(cp))) continue;
    if (is_space(cp)) {
      end_word();
      continue;
    }
    if (lowercase_) cp = fold_latin1(cp);
    if (is_punctuation(cp) || is_cjk(cp)) {
      end_word();
      word = encode_utf8(cp);
      end_word();
      continue;
    }
    word += encode_utf8(cp);
  }
  end_word();
  const int32_t unknown = bytes_to_id_.at("[UNK]");
  for (const std::string& w : words) {
    size_t chars = 0;
    for (size_t pos = 0, length = 0; pos < w.size(); pos += length, ++chars) codepoint_at(w, pos, length);
    if (chars > 100) {
      out.push_back(unknown);
      continue;
    }
    // The longest prefix in the vocabulary first, then the rest as "##" pieces, on character
    // boundaries; a word with a piece that matches nothing is one [UNK].
    std::vector<int32_t> pieces;
    for (size_t start = 0; start < w.size();) {
      int32_t found = -1;
      size_t end = w.size();
      while (end > start) {
        const auto it = bytes_to_id_.find((start > 0 ? "##" : "") + w.substr(start, end - start));
        if (it != bytes_to_id_.end()) {
          found = it->second;
          break;
        }
        do --end;
        while (end > start && (static_cast<unsigned char>(w[end]) & 0xC0) == 0x80);
      }
      if (found < 0) {
        pieces = {unknown};
        break;
      }
      pieces.push_back(found);
      start = end;
    }
    out.insert(out.end(), pieces.begin(), pieces.end());
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (wordpiece_) {
    // Special tokens written in the text are those tokens; the text between is split as words.
    while (!text.empty()) {
      size_t at = std::string_view::npos;
      std::string_view which;
      for (std::string_view special : kWordPieceSpecials)
        if (const size_t p = text.find(special); p < at && bytes_to_id_.contains(std::string(special)))
          at = p, which = special;
      encode_wordpiece(text.substr(0, at), ids);
      if (at == std::string_view::npos) break;
      ids.push_back(bytes_to_id_.at(std::string(which)));
      text.remove_prefix(at + which.size());
    }
    return ids;
  }
  for (std::string_view word : llama3_split_ ? pretokenize_llama3(text) : pretokenize(text)) encode_word(word, ids);
  return ids;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (0..{})", id, vocab_size() - 1);
  return id_to_bytes_[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    const std::string& piece = token_bytes(id);
    if (!wordpiece_) {
      out += piece;
    } else if (piece.starts_with("##")) {
      out.append(piece, 2);
    } else {
      out += (out.empty() ? "" : " ") + piece;
    }
  }
  return out;
}

}  // namespace tessera::model
