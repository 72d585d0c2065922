// libFuzzer target for the files tessera writes and users share: plan JSON of every fabric
// (`tessera simulate PLAN`) and run JSON (`tessera report RUN.json`). Any text must load or throw
// tessera::Error — never crash, hang or read out of bounds — and a plan that loads must write
// itself out again. Seeds: plans and runs of each fabric written by build/tessera (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/base/error.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/target/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const tessera::target::LoadedPlan loaded = tessera::target::load_plan(text, "fuzz.json");
    const std::string again = loaded.plan->to_json();
    if (again.empty()) __builtin_trap();
  } catch (const tessera::Error&) {
  }
  try {
    tessera::report::html_report(text, "fuzz.json");
  } catch (const tessera::Error&) {
  }
  return 0;
}
