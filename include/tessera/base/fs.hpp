// Reading the files a user hands tessera. Every input must be a regular file (never a device, a
// FIFO or a socket, which could block or never end) no larger than its kind allows, checked
// before a byte is read; error messages quote a file's content only as a short, escaped excerpt.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace tessera {

// What an input file is, for messages, and the most bytes tessera reads of that kind. The limits
// leave headroom over the largest real file of each kind (docs/architecture.md, "Inputs").
struct InputKind {
  const char* what;
  uintmax_t max_bytes;
};

inline constexpr InputKind kDescriptionFile{"YAML description", uintmax_t{16} << 20};
inline constexpr InputKind kPlanFile{"plan", uintmax_t{1} << 30};
inline constexpr InputKind kRunFile{"run JSON", uintmax_t{1} << 30};
inline constexpr InputKind kTokenizerFile{"tokenizer file", uintmax_t{256} << 20};
inline constexpr InputKind kTextFile{"text file", uintmax_t{1} << 30};
inline constexpr InputKind kWeightsFile{"weights file", uintmax_t{4} << 40};  // mapped, not read whole

// Fails with a one-line reason unless `path` names (possibly through symlinks) a regular file of
// at most kind.max_bytes; returns its size in bytes.
uintmax_t check_input_file(const std::filesystem::path& path, const InputKind& kind);

// Reads a whole input file after check_input_file; throws Error naming the path otherwise.
std::string read_text_file(const std::filesystem::path& path, const InputKind& kind = kDescriptionFile);

// At most `max_chars` characters of `text` for an error message: control and non-ASCII bytes
// escaped as \xNN, newlines as \n, and "..." when cut.
std::string excerpt(std::string_view text, size_t max_chars = 60);

}  // namespace tessera
