// libFuzzer target for the descriptions a user hands tessera (arch and model config YAML, a Hugging
// Face config.json, a sweep file): any text must parse or throw tessera::Error — never crash, hang
// or overflow. Build and run as
// fuzz_safetensors.cpp says, or all targets at once with scripts/fuzz.sh (CI runs it).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/sweep/sweep.hpp"
#include "tessera/target/arch.hpp"

namespace {

// A sweep file's presets and models resolve to the shipped files (any other name fails).
std::filesystem::path shipped(const std::string& folder, const std::string& name) {
  const std::filesystem::path path = std::filesystem::path(TESSERA_SOURCE_DIR) / "configs" / folder / (name + ".yaml");
  if (name.empty() || name.find('/') != std::string::npos || !std::filesystem::is_regular_file(path))
    tessera::fail("no shipped {} '{}'", folder, name);
  return path;
}

void sweep_file(const std::string& text) {
  const tessera::sweep::Resolvers resolve{.arch = [](const std::string& name) { return shipped("arch", name); },
                                          .model =
                                              [](const std::string& name, tessera::system::Workload& work) {
                                                work.model = tessera::ir::load_model_config(shipped("models", name));
                                              }};
  const tessera::sweep::Spec spec = tessera::sweep::load_spec(text, "fuzz-sweep.yaml", resolve);
  // Small sweeps also enumerate their points and build the first design (evaluating is not fuzzed).
  double points = spec.method == "grid" ? 1.0 : static_cast<double>(spec.samples);
  if (spec.method == "grid")
    for (const auto& p : spec.parameters) points *= static_cast<double>(p.values.size());
  if (points > 1024) return;
  const auto all = tessera::sweep::points(spec);
  if (all.empty()) __builtin_trap();
  tessera::sweep::design(spec, all.front());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    tessera::target::parse_arch(text, "fuzz.yaml");
  } catch (const tessera::Error&) {
  }
  for (const char* origin : {"fuzz.yaml", "fuzz/config.json"}) {
    try {
      const auto config = tessera::ir::parse_model_config(text, origin);
      // Small enough configs also build and verify their graph (the limits keep this bounded).
      if (config.n_layers * config.d_model <= (int64_t{1} << 16)) {
        const auto graph = tessera::ir::build_model_graph(config);
        if (!graph.verify()) __builtin_trap();
      }
    } catch (const tessera::Error&) {
    }
  }
  try {
    sweep_file(text);
  } catch (const tessera::Error&) {
  }
  return 0;
}
