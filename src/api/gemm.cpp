#include "tessera/api/gemm.hpp"

#include "tessera/api/catalog.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::api {

std::vector<report::GemmRun> gemm(const std::vector<std::string>& archs, const target::GemmWork& work) {
  std::vector<report::GemmRun> runs;
  for (const auto& name : archs) {
    const auto target = target::load_target(resolve_arch(name));
    try {
      runs.push_back({target->arch().name, target->arch().clock_hz, target->simulate_gemm(work)});
    } catch (const Error& e) {
      fail("{}: {}", name, e.what());
    }
  }
  return runs;
}

}  // namespace tessera::api
