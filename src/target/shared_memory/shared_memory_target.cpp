// shared_memory: GPUs and Trainium, kernel by kernel over HBM, tensor-parallel groups over their
// links (docs/gpu-model.md). Values: the reference in the plan's arithmetic order.
#include <algorithm>

#include "../targets.hpp"
#include "gemm_tiling.hpp"
#include "shared_memory_training.hpp"
#include "tessera/target/partitioning.hpp"
#include "tessera/target/shared_memory/gpu_compiler.hpp"

namespace tessera::target {

namespace {

class GpuPlanFile : public Plan {
 public:
  explicit GpuPlanFile(program::GpuPlan compiled) : plan(std::move(compiled)) {}
  std::string to_json() const override { return program::to_json(plan); }
  program::GpuPlan plan;
};

class SharedMemoryTarget : public Target {
 public:
  using Target::Target;

  Capabilities capabilities() const override {
    return {.pipeline = false,
            .head_groups = false,
            .tensor_parallel = true,
            .batches_requests = true,
            .data_plane = false,
            .core_heatmaps = false,
            .mixture_of_experts = true,
            .expert_parallel = true};
  }

  Compiled compile(const ModelSource& model, const ChipWork& work) const override {
    if (!work.slice.whole(model.config))
      fail("{} chips run whole models (split over chips by tensor parallelism), not pipeline slices", arch().name);
    if (work.resident() != work.micro_batch)
      fail("{} decodes every request it holds together: resident requests must equal the micro-batch", arch().name);
    const compiler::LoweredModel& lowered = model.lowered();
    auto result =
        compiler::compile_for_gpu(model.config, model.yaml, model.origin, arch_.spec, arch_.yaml, arch_.origin,
                                  {.prompt_tokens = work.prompt_tokens,
                                   .max_new_tokens = work.max_new_tokens,
                                   .micro_batch = work.micro_batch,
                                   .tensor_parallel = work.tensor_parallel,
                                   .precision = work.precision,
                                   .routing = work.routing,
                                   .lowered = &lowered,
                                   .expert_parallel = work.expert_parallel});
    if (!result.status) return {result.status, nullptr};
    return {result.status, std::make_shared<GpuPlanFile>(std::move(result.plan))};
  }

  std::shared_ptr<const Plan> parse_plan(const std::string& text, const std::string& origin) const override {
    return std::make_shared<GpuPlanFile>(program::gpu_plan_from_json(text, origin));
  }

  TrainingOutcome simulate_training(const ModelSource& model, const TrainingWork& work) const override {
    return simulate_gpu_training(arch(), model, work);
  }

  GemmOutcome simulate_gemm(const GemmWork& work) const override { return time_tiled_gemm(arch(), work); }

  RunReport simulate(const Plan& plan, const SimulateOptions& options) const override {
    if (!options.cycle_region.empty())
      fail("--cycle-region {}: {} has one timing tier (no mesh fabric to time wavelet by wavelet)",
           options.cycle_region, arch().name);
    const program::GpuPlan& p = plan_as<GpuPlanFile>(plan, "shared_memory").plan;
    sim::GpuReport g = sim::simulate_gpu(p);
    RunReport r = phase_timed_run("shared_memory", p, g);
    r.batch = g.batch;  // an expert-parallel group's requests (its plan's batch is each GPU's)
    r.memory = {"HBM per GPU", g.hbm_used_bytes, g.hbm_bytes};
    for (const auto& [from, to] :
         {std::pair{&g.prefill_kernels, &r.prefill_steps}, std::pair{&g.last_decode_kernels, &r.last_decode_steps}})
      for (const sim::GpuKernelTime& k : *from) to->push_back({k.name, k.op, k.bound, k.seconds, k.macs, k.hbm_bytes});
    r.detail = std::move(g);
    return r;
  }

  std::unique_ptr<Executor> executor(const Plan& plan, const ir::Graph& graph, const model::Weights& weights,
                                     int64_t max_context) const override {
    const program::GpuPlan& p = plan_as<GpuPlanFile>(plan, "shared_memory").plan;
    return std::make_unique<ReferenceValues>(graph, weights, max_context, p.precision, sim::partitioning(p, graph));
  }
};

}  // namespace

std::unique_ptr<Target> make_shared_memory_target(ArchSource arch) {
  return std::make_unique<SharedMemoryTarget>(std::move(arch));
}

}  // namespace tessera::target
