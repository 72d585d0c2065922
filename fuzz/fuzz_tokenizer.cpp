// libFuzzer target for tokenizer files and text: the input's first byte picks what is fuzzed.
// Even: the text after it is encoded with GPT-2's vocabulary and must decode to the same bytes
// (byte-level BPE loses nothing, valid UTF-8 or not), Llama 3's pre-tokenizer must split it
// into non-empty pieces that join back to it, and BERT's WordPiece must give ids inside its
// vocabulary. Odd: the rest is split at the first NUL into an encoder.json and a vocab.bpe,
// which must load or throw tessera::Error, and then encode.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "tessera/base/error.hpp"
#include "tessera/model/tokenizer.hpp"

namespace {

const tessera::model::Tokenizer& gpt2() {
  static const auto tokenizer = tessera::model::Tokenizer::load(TESSERA_SOURCE_DIR "/models/default/encoder.json",
                                                                TESSERA_SOURCE_DIR "/models/default/vocab.bpe");
  return tokenizer;
}

const tessera::model::Tokenizer& wordpiece() {
  static const auto tokenizer =
      tessera::model::Tokenizer::load_wordpiece(TESSERA_SOURCE_DIR "/tests/data/hf/bert/vocab.txt", true);
  return tokenizer;
}

void write(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const auto ids = gpt2().encode(rest);
    if (gpt2().decode(ids) != rest) __builtin_trap();
    std::string joined;  // Llama 3's split: non-empty pieces that put the text back together
    for (const auto piece : tessera::model::pretokenize_llama3(rest)) {
      if (piece.empty()) __builtin_trap();
      joined += piece;
    }
    if (joined != rest) __builtin_trap();
    for (const int32_t id : wordpiece().encode(rest))
      if (id < 0 || id >= wordpiece().vocab_size()) __builtin_trap();
    return 0;
  }
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tessera-fuzz-tokenizer-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const size_t split = rest.find('\0');
  write(dir / "encoder.json", rest.substr(0, split));
  write(dir / "vocab.bpe", split == std::string::npos ? "" : rest.substr(split + 1));
  try {
    const auto tokenizer = tessera::model::Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
    tokenizer.decode(tokenizer.encode("It is a truth universally acknowledged, \xff\xfe caf\xc3\xa9"));
  } catch (const tessera::Error&) {
  }
  return 0;
}
