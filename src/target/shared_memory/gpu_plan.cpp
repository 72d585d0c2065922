#include "tessera/target/shared_memory/gpu_plan.hpp"

#include <utility>

#include "../plan_json.hpp"
#include "tessera/compiler/routing.hpp"

namespace tessera::program {

namespace {

constexpr const char* kFormat = "tessera-gpu-plan";
// 2: routing, the experts kernel; 3: expert parallelism, alltoall; 4: split-K workspaces, the reduce kernel
constexpr int64_t kVersion = 4;

constexpr std::pair<const char*, int64_t Kernel::*> kKernelIntegers[] = {
    {"m", &Kernel::m},           {"n", &Kernel::n},           {"k", &Kernel::k},       {"tile_m", &Kernel::tile_m},
    {"tile_n", &Kernel::tile_n}, {"tile_k", &Kernel::tile_k}, {"ctas", &Kernel::ctas}, {"waves", &Kernel::waves}};
constexpr std::pair<const char*, double Kernel::*> kKernelNumbers[] = {
    {"macs", &Kernel::macs},
    {"macs_per_position", &Kernel::macs_per_position},
    {"hbm_bytes", &Kernel::hbm_bytes},
    {"hbm_bytes_per_position", &Kernel::hbm_bytes_per_position},
    {"unpack_ops", &Kernel::unpack_ops},
    {"link_bytes", &Kernel::link_bytes},
    {"workspace_bytes", &Kernel::workspace_bytes},
    {"macs_all_gpus", &Kernel::macs_all_gpus},
    {"hbm_bytes_all_gpus", &Kernel::hbm_bytes_all_gpus}};
constexpr std::pair<const char*, int64_t GpuPlan::*> kPlanIntegers[] = {{"prompt_tokens", &GpuPlan::prompt_tokens},
                                                                        {"max_new_tokens", &GpuPlan::max_new_tokens},
                                                                        {"batch", &GpuPlan::batch},
                                                                        {"tensor_parallel", &GpuPlan::tensor_parallel},
                                                                        {"expert_parallel", &GpuPlan::expert_parallel}};
constexpr std::pair<const char*, double GpuPlan::*> kPlanNumbers[] = {{"weight_bytes", &GpuPlan::weight_bytes},
                                                                      {"kv_cache_bytes", &GpuPlan::kv_cache_bytes},
                                                                      {"activation_bytes", &GpuPlan::activation_bytes}};

}  // namespace

std::string to_json(const GpuPlan& p) {
  json doc = plan_json(kFormat, kVersion, p);
  for (const auto& [key, field] : kPlanIntegers) doc[key] = p.*field;
  for (const auto& [key, field] : kPlanNumbers) doc[key] = p.*field;
  doc["routing"] = p.routing;
  for (const auto& [phase, kernels] : {std::pair{"prefill", &p.prefill}, std::pair{"decode", &p.decode}}) {
    json list = json::array();
    for (const Kernel& k : *kernels) {
      json j = {{"name", k.name}, {"op", k.op}};
      for (const auto& [key, field] : kKernelIntegers) j[key] = k.*field;
      for (const auto& [key, field] : kKernelNumbers) j[key] = k.*field;
      list.push_back(j);
    }
    doc[phase] = list;
  }
  return doc.dump(1) + "\n";
}

GpuPlan gpu_plan_from_json(const std::string& text, const std::string& origin) {
  GpuPlan p;
  const json doc = read_plan(text, origin, kFormat, kVersion, p);
  const Reader r{doc, origin};
  for (const auto& [key, field] : kPlanIntegers) p.*field = r.integer(key);
  for (const auto& [key, field] : kPlanNumbers) p.*field = r.number(key);
  p.routing = r.string("routing");
  if (!p.routing.empty()) compiler::parse_routing(p.routing);
  if (p.prompt_tokens < 1 || p.max_new_tokens < 0 || p.batch < 1 || p.tensor_parallel < 1 || p.expert_parallel < 1 ||
      (p.expert_parallel > 1 && p.tensor_parallel > 1))
    fail("{}: inconsistent counts (prompt {}, new tokens {}, batch {}, tensor parallel {}, expert parallel {})", origin,
         p.prompt_tokens, p.max_new_tokens, p.batch, p.tensor_parallel, p.expert_parallel);
  check_plan_request(origin, p.model_yaml, p.model_origin, p.prompt_tokens, p.max_new_tokens, p.batch);
  for (const auto& [phase, kernels] : {std::pair{"prefill", &p.prefill}, std::pair{"decode", &p.decode}}) {
    const json& list = r.array(phase);
    for (size_t i = 0; i < list.size(); ++i) {
      const Reader k{list[i], fmt::format("{}: {}[{}]", origin, phase, i)};
      Kernel kern;
      kern.name = k.string("name"), kern.op = k.string("op");
      if (kern.op != "gemm" && kern.op != "experts" && kern.op != "reduce" && kern.op != "attention" &&
          kern.op != "elementwise" && kern.op != "allreduce" && kern.op != "alltoall")
        fail("{}: unknown kernel op '{}'", k.where, kern.op);
      for (const auto& [key, field] : kKernelIntegers) kern.*field = k.integer(key);
      for (const auto& [key, field] : kKernelNumbers) kern.*field = k.number(key);
      kernels->push_back(kern);
    }
  }
  return p;
}

}  // namespace tessera::program
