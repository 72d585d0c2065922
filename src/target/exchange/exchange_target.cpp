// exchange: Graphcore-like IPUs, bulk-synchronous supersteps over tiles with an all-to-all
// exchange (docs/ipu-model.md). Values: the reference in the plan's arithmetic order.
#include <fmt/core.h>

#include <algorithm>

#include "../targets.hpp"
#include "exchange_gemm.hpp"
#include "exchange_training.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/target/exchange/exchange_compiler.hpp"
#include "tessera/target/partitioning.hpp"

namespace tessera::target {

namespace {

class BspPlanFile : public Plan {
 public:
  explicit BspPlanFile(program::BspPlan compiled) : plan(std::move(compiled)) {}
  std::string to_json() const override { return program::to_json(plan); }
  program::BspPlan plan;
};

class ExchangeTarget : public Target {
 public:
  using Target::Target;

  Capabilities capabilities() const override {
    return {.pipeline = true,
            .head_groups = true,
            .tensor_parallel = false,
            .batches_requests = true,
            .data_plane = false,
            .core_heatmaps = false,
            .mixture_of_experts = true,
            .expert_groups = true};
  }

  Compiled compile(const ModelSource& model, const ChipWork& work) const override {
    if (work.tensor_parallel != 1 || work.expert_parallel != 1)
      fail("{} chips do not split layers (tensor or expert parallelism over a group); they form pipelines",
           arch().name);
    const compiler::LoweredModel& lowered = model.lowered();
    auto result =
        compiler::compile_for_exchange(model.config, model.yaml, model.origin, arch_.spec, arch_.yaml, arch_.origin,
                                       {.prompt_tokens = work.prompt_tokens,
                                        .max_new_tokens = work.max_new_tokens,
                                        .micro_batch = work.micro_batch,
                                        .precision = work.precision,
                                        .slice = work.slice,
                                        .resident_requests = work.resident_requests,
                                        .routing = work.routing,
                                        .lowered = &lowered});
    if (!result.status) return {result.status, nullptr};
    return {result.status, std::make_shared<BspPlanFile>(std::move(result.plan))};
  }

  std::shared_ptr<const Plan> parse_plan(const std::string& text, const std::string& origin) const override {
    return std::make_shared<BspPlanFile>(program::bsp_plan_from_json(text, origin));
  }

  RunReport simulate(const Plan& plan, const SimulateOptions& options) const override {
    if (!options.cycle_region.empty())
      fail("--cycle-region {}: {} has one timing tier (no mesh fabric to time wavelet by wavelet)",
           options.cycle_region, arch().name);
    const program::BspPlan& p = plan_as<BspPlanFile>(plan, "exchange").plan;
    sim::BspReport b = sim::simulate_bsp(p);
    RunReport r = phase_timed_run("exchange", p, b);
    r.memory = {"SRAM per tile", b.tile_bytes_used, b.tile_bytes};
    for (const auto& [from, to] :
         {std::pair{&b.prefill_steps, &r.prefill_steps}, std::pair{&b.last_decode_steps, &r.last_decode_steps}})
      for (const sim::SuperstepTime& st : *from)
        to->push_back({st.name, st.op, st.bound, st.seconds, st.macs, st.exchange_bytes});
    r.detail = std::move(b);
    return r;
  }

  GemmOutcome simulate_gemm(const GemmWork& work) const override { return simulate_exchange_gemm(arch(), work); }

  TrainingOutcome simulate_training(const ModelSource& model, const TrainingWork& work) const override {
    return simulate_ipu_training(arch(), model, work);
  }

  // Fits where the IPU training model keeps the step's state in tile SRAM; the products split as
  // the compiled prefill plan splits each matrix over its tiles.
  TrainingValues training_values(const ModelSource& model, const TrainingWork& work) const override {
    if (work.chips != 1) fail("training with values runs on one {}", arch().name);
    const TrainingOutcome fits = simulate_ipu_training(arch(), model, work);
    if (!fits.status) return {fits.status, {}, ""};
    const Compiled compiled = compile(model, {.prompt_tokens = work.seq, .max_new_tokens = 0});
    if (!compiled.status) return {compiled.status, {}, ""};
    const program::BspPlan& p = plan_as<BspPlanFile>(*compiled.plan, "exchange").plan;
    const ir::Graph graph = model.graph ? *model.graph : ir::build_model_graph(model.config);
    return {{},
            sim::training_partitioning(p, graph),
            fmt::format("weights, gradients and optimizer state in tile SRAM ({}); each matrix over its tiles, k split "
                        "as in prefill",
                        fits.report.layout)};
  }

  std::unique_ptr<Executor> executor(const Plan& plan, const ir::Graph& graph, const model::Weights& weights,
                                     int64_t max_context) const override {
    const program::BspPlan& p = plan_as<BspPlanFile>(plan, "exchange").plan;
    return std::make_unique<ReferenceValues>(graph, weights, max_context, p.precision, sim::partitioning(p, graph));
  }
};

}  // namespace

std::unique_ptr<Target> make_exchange_target(ArchSource arch) {
  return std::make_unique<ExchangeTarget>(std::move(arch));
}

}  // namespace tessera::target
