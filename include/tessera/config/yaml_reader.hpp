// Strict reading of YAML mappings for every tessera description file.
//
// Contract: each accessor names the file, the key path and line, and what was expected when a key
// is missing or has the wrong type; finish() rejects any key that no accessor asked for, so a typo
// in a config is an error rather than a silently ignored setting.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::config {

class YamlMap {
 public:
  static YamlMap parse_file(const std::filesystem::path& path);
  static YamlMap parse_string(std::string_view text, const std::string& origin);

  bool has(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  std::optional<int64_t> optional_integer(const std::string& key) const;
  double number(const std::string& key) const;
  std::optional<double> optional_number(const std::string& key) const;
  std::string string(const std::string& key) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  bool boolean(const std::string& key) const;
  std::optional<bool> optional_boolean(const std::string& key) const;
  YamlMap map(const std::string& key) const;
  // A list of strings ("[a, b]" or a block sequence); an empty list is allowed.
  std::vector<std::string> strings(const std::string& key) const;
  // A list of mappings, each read (and finished) like map(); keys are named "key[i].child".
  std::vector<YamlMap> maps(const std::string& key) const;

  // The mapping's keys in file order (each becomes a known key for finish()).
  std::vector<std::string> keys() const;
  bool is_map(const std::string& key) const;

  // Throws if the mapping holds a key that was never read.
  void finish() const;

  // "file: key 'a.b' (line 3)": the prefix for error messages about one key.
  std::string where(const std::string& key) const;
  const std::string& origin() const;

  struct Impl;

 private:
  explicit YamlMap(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// `text` with each dotted key path set to its value (a scalar, written as given), in the YAML
// text form yaml-cpp emits (comments are not kept). A path's parent mappings must exist in `text`;
// throws Error naming `origin` and the path otherwise.
std::string with_values(std::string_view text, const std::string& origin,
                        const std::vector<std::pair<std::string, std::string>>& values);

}  // namespace tessera::config
