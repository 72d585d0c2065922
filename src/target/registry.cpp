#include "tessera/target/registry.hpp"

#include <nlohmann/json.hpp>

#include "targets.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::target {

const compiler::LoweredModel& ModelSource::lowered() const {
  std::call_once(lowered_once->once,
                 [&] { lowered_once->model = compiler::lower_graph(graph ? *graph : ir::build_model_graph(config)); });
  return lowered_once->model;
}

GemmOutcome Target::simulate_gemm(const GemmWork&) const {
  fail(
      "{} ({} fabric) has no model of a matrix product as a kernel of its own yet; the mesh2d, exchange and "
      "shared_memory targets have one",
      arch().name, arch().fabric);
}

const std::vector<TargetInfo>& targets() {
  static const std::vector<TargetInfo> all = {
      {"mesh2d", "tessera-mesh-plan", make_mesh2d_target},
      {"exchange", "tessera-bsp-plan", make_exchange_target},
      {"shared_memory", "tessera-gpu-plan", make_shared_memory_target},
  };
  return all;
}

std::unique_ptr<Target> make_target(ArchSource arch) {
  const std::string fabric = arch.spec.fabric;
  for (const auto& info : targets())
    if (fabric == info.fabric) return info.make(std::move(arch));
  fail("{}: no target models fabric '{}'", arch.origin, fabric);
}

std::unique_ptr<Target> load_target(const std::filesystem::path& arch_file) {
  const std::string yaml = read_text_file(arch_file);
  arch::ArchSpec spec = target::parse_arch(yaml, arch_file.string());
  return make_target({std::move(spec), yaml, arch_file.string()});
}

LoadedPlan load_plan(const std::string& text, const std::string& origin) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) fail("{}: not valid JSON", origin);
  const auto format = doc.is_object() ? doc.find("format") : doc.end();
  std::string formats;
  for (const auto& info : targets()) {
    if (format != doc.end() && *format == info.plan_format) {
      const auto arch = doc.find("arch");
      if (arch == doc.end() || !arch->is_object() || !arch->contains("yaml") || !(*arch)["yaml"].is_string())
        fail("{}: key 'arch.yaml': missing; the plan must embed the arch it was compiled for", origin);
      const std::string yaml = (*arch)["yaml"].get<std::string>();
      const std::string arch_origin = arch->contains("origin") && (*arch)["origin"].is_string()
                                          ? (*arch)["origin"].get<std::string>()
                                          : origin + ": arch";
      auto target = make_target({target::parse_arch(yaml, arch_origin), yaml, arch_origin});
      auto plan = target->parse_plan(text, origin);
      return {std::move(target), std::move(plan)};
    }
    formats += (formats.empty() ? "" : ", ") + std::string(info.plan_format);
  }
  fail("{}: not a tessera plan (its format is none of {}; write one with `tessera compile --arch ARCH -o plan.json`)",
       origin, formats);
}

}  // namespace tessera::target
