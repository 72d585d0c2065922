// Reading checked numbers from a description's YAML: the rules every section of an arch file
// shares (the common keys in arch_spec.cpp, each fabric's own in src/target/<fabric>/).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/base/error.hpp"
#include "tessera/config/yaml_reader.hpp"

namespace tessera::arch {

struct ChipLinkSpec;

inline int64_t positive(const config::YamlMap& map, const std::string& key) {
  const int64_t v = map.integer(key);
  if (v <= 0) fail("{}: must be a positive integer, got {}", map.where(key), v);
  return v;
}

// A positive integer no larger than `limit`, which leaves headroom over every machine that exists
// (`what` says which); a description beyond it is a typo, and would cost minutes to simulate.
inline int64_t positive_at_most(const config::YamlMap& map, const std::string& key, int64_t limit, const char* what) {
  const int64_t v = positive(map, key);
  if (v > limit) fail("{}: {} is more than tessera simulates ({} at most; {})", map.where(key), v, limit, what);
  return v;
}

inline int64_t non_negative(const config::YamlMap& map, const std::string& key) {
  const int64_t v = map.integer(key);
  if (v < 0) fail("{}: must be >= 0, got {}", map.where(key), v);
  return v;
}

// A quantity with a unit (arch/units.hpp), which must be > 0.
inline double positive_unit(const config::YamlMap& map, const std::string& key,
                            double (*parse)(std::string_view, const std::string&)) {
  const double v = parse(map.string(key), map.where(key));
  if (v <= 0) fail("{}: must be > 0", map.where(key));
  return v;
}

// The `link` section of a chip that reaches the other chips of a system over links of its own
// (exchange, shared_memory): bandwidth per direction, latency per message, and optionally the share
// of the line rate that collectives sustain.
void parse_chip_link(const config::YamlMap& root, ChipLinkSpec& link);

}  // namespace tessera::arch
