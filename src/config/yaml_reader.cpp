#include "tessera/config/yaml_reader.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"

namespace tessera::config {

struct YamlMap::Impl {
  YAML::Node node;
  std::string origin;
  std::string path;  // dotted key path of this mapping, empty at the root
  mutable std::set<std::string> read_keys;

  std::string full_key(const std::string& key) const { return path.empty() ? key : path + "." + key; }
};

namespace {

std::string node_text(const YAML::Node& node) {
  if (node.IsScalar()) return fmt::format("'{}'", excerpt(node.Scalar()));
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

YamlMap::Impl make_root(const YAML::Node& node, const std::string& origin) {
  if (!node.IsDefined() || node.IsNull()) fail("{}: the file is empty; expected a YAML mapping", origin);
  if (!node.IsMap()) fail("{}: expected a YAML mapping at the top level, got {}", origin, node_text(node));
  return YamlMap::Impl{node, origin, "", {}};
}

}  // namespace

YamlMap::YamlMap(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

YamlMap YamlMap::parse_string(std::string_view text, const std::string& origin) {
  YAML::Node node;
  try {
    node = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    fail("{}:{}:{}: malformed YAML: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  return YamlMap(std::make_shared<Impl>(make_root(node, origin)));
}

YamlMap YamlMap::parse_file(const std::filesystem::path& path) {
  return parse_string(read_text_file(path), path.string());
}

const std::string& YamlMap::origin() const { return impl_->origin; }

std::vector<std::string> YamlMap::keys() const {
  std::vector<std::string> out;
  for (const auto& item : impl_->node) {
    out.push_back(item.first.as<std::string>());
    impl_->read_keys.insert(out.back());
  }
  return out;
}

bool YamlMap::is_map(const std::string& key) const { return impl_->node[key].IsMap(); }

std::string with_values(std::string_view text, const std::string& origin,
                        const std::vector<std::pair<std::string, std::string>>& values) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    fail("{}:{}:{}: malformed YAML: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  for (const auto& [path, value] : values) {
    std::vector<std::string> parts;
    for (size_t start = 0;;) {
      const size_t dot = path.find('.', start);
      parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    // yaml-cpp nodes are handles: walking with reset() keeps `node` pointing into `root`.
    YAML::Node node;
    node.reset(root);
    std::string parent;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      parent += (i == 0 ? "" : ".") + parts[i];
      const YAML::Node child = node[parts[i]];
      if (!child.IsDefined() || !child.IsMap())
        fail("{}: has no mapping '{}' to set '{}' in", origin, excerpt(parent), excerpt(path));
      node.reset(child);
    }
    node[parts.back()] = value;
  }
  YAML::Emitter out;
  out << root;
  return out.c_str();
}

std::string YamlMap::where(const std::string& key) const {
  const YAML::Node child = impl_->node[key];
  if (child.IsDefined() && child.Mark().line >= 0)
    return fmt::format("{}:{}: key '{}'", impl_->origin, child.Mark().line + 1, excerpt(impl_->full_key(key)));
  return fmt::format("{}: key '{}'", impl_->origin, excerpt(impl_->full_key(key)));
}

bool YamlMap::has(const std::string& key) const {
  impl_->read_keys.insert(key);  // asking about a key makes it a known key for finish()
  const YAML::Node child = impl_->node[key];
  return child.IsDefined() && !child.IsNull();
}

namespace {

YAML::Node require(const YamlMap& map, const YAML::Node& node, const std::string& key, const char* expected) {
  const YAML::Node child = node[key];
  if (!child.IsDefined() || child.IsNull()) fail("{}: missing required key (expected {})", map.where(key), expected);
  return child;
}

}  // namespace

int64_t YamlMap::integer(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "an integer");
  int64_t value = 0;
  if (!child.IsScalar() || !YAML::convert<int64_t>::decode(child, value))
    fail("{}: expected an integer, got {}", where(key), node_text(child));
  return value;
}

std::optional<int64_t> YamlMap::optional_integer(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return integer(key);
}

double YamlMap::number(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "a number");
  double value = 0;
  if (!child.IsScalar() || !YAML::convert<double>::decode(child, value) || !std::isfinite(value))
    fail("{}: expected a finite number, got {}", where(key), node_text(child));
  return value;
}

std::optional<double> YamlMap::optional_number(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return number(key);
}

std::string YamlMap::string(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "a string");
  if (!child.IsScalar()) fail("{}: expected a string, got {}", where(key), node_text(child));
  return child.Scalar();
}

std::optional<std::string> YamlMap::optional_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}

bool YamlMap::boolean(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "true or false");
  bool value = false;
  if (!child.IsScalar() || !YAML::convert<bool>::decode(child, value))
    fail("{}: expected true or false, got {}", where(key), node_text(child));
  return value;
}

std::optional<bool> YamlMap::optional_boolean(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return boolean(key);
}

YamlMap YamlMap::map(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "a mapping");
  if (!child.IsMap()) fail("{}: expected a mapping, got {}", where(key), node_text(child));
  return YamlMap(std::make_shared<Impl>(Impl{child, impl_->origin, impl_->full_key(key), {}}));
}

std::vector<std::string> YamlMap::strings(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "a list of strings");
  if (!child.IsSequence()) fail("{}: expected a list of strings, got {}", where(key), node_text(child));
  std::vector<std::string> out;
  for (const auto& item : child) {
    if (!item.IsScalar()) fail("{}: expected a list of strings, but an item is {}", where(key), node_text(item));
    out.push_back(item.Scalar());
  }
  return out;
}

std::vector<YamlMap> YamlMap::maps(const std::string& key) const {
  impl_->read_keys.insert(key);
  const YAML::Node child = require(*this, impl_->node, key, "a list of mappings");
  if (!child.IsSequence()) fail("{}: expected a list of mappings, got {}", where(key), node_text(child));
  std::vector<YamlMap> out;
  for (size_t i = 0; i < child.size(); ++i) {
    const std::string item_key = fmt::format("{}[{}]", key, i);
    if (!child[i].IsMap())
      fail("{}: item {} (line {}): expected a mapping, got {}", where(key), i, child[i].Mark().line + 1,
           node_text(child[i]));
    out.push_back(YamlMap(std::make_shared<Impl>(Impl{child[i], impl_->origin, impl_->full_key(item_key), {}})));
  }
  return out;
}

void YamlMap::finish() const {
  for (const auto& entry : impl_->node) {
    if (!entry.first.IsScalar()) fail("{}: mapping keys must be plain strings", impl_->origin);
    const std::string key = entry.first.Scalar();
    if (!impl_->read_keys.contains(key)) {
      std::string known;
      for (const auto& k : impl_->read_keys) known += (known.empty() ? "" : ", ") + k;
      fail("{}: unknown key; known keys here are: {}", where(key), known);
    }
  }
}

}  // namespace tessera::config
