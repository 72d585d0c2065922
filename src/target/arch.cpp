#include "tessera/target/arch.hpp"

#include "arch_sections.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/base/memo.hpp"

namespace tessera::target {

namespace {

arch::ArchSpec parse_arch_text(const std::string& yaml_text, const std::string& origin) {
  const config::YamlMap root = config::YamlMap::parse_string(yaml_text, origin);
  const std::string fabric = root.string("fabric");
  std::string known;
  for (const arch::FabricSection* section : {&mesh2d_section(), &exchange_section(), &shared_memory_section()}) {
    if (fabric == section->name()) return arch::parse_arch(root, *section);
    known += (known.empty() ? "" : ", ") + std::string(section->name());
  }
  fail("{}: unknown fabric '{}'; supported: {}", root.where("fabric"), fabric, known);
}

}  // namespace

arch::ArchSpec parse_arch(const std::string& yaml_text, const std::string& origin) {
  static TextMemo<arch::ArchSpec> parsed(16);
  return parsed.get(origin, yaml_text, [&] { return parse_arch_text(yaml_text, origin); });
}

std::map<std::string, std::string> resized(const arch::ArchSpec& a, double scale) {
  for (const arch::FabricSection* section : {&mesh2d_section(), &exchange_section(), &shared_memory_section()})
    if (a.fabric == section->name()) return section->resized(a, scale);
  fail("unknown fabric '{}'", a.fabric);
}

arch::ArchSpec load_arch(const std::filesystem::path& path) { return parse_arch(read_text_file(path), path.string()); }

}  // namespace tessera::target
