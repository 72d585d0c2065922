// libFuzzer target for the descriptions a user hands tessera (arch and model config YAML, a Hugging
// Face config.json): any text must parse or throw tessera::Error — never crash, hang or overflow. Build and run as
// fuzz_safetensors.cpp says, or all targets at once with scripts/fuzz.sh (CI runs it).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/arch.hpp"

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
  return 0;
}
