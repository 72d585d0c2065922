// mesh2d: wafer-scale meshes (Cerebras-like) and Tensix-like grids: layer-pipelined placement,
// collectives on the fabric, a data plane that computes values core by core (docs/mesh-mapping.md).
#include <fmt/core.h>

#include <algorithm>

#include "../targets.hpp"
#include "mesh2d_gemm.hpp"
#include "mesh2d_training.hpp"
#include "tessera/target/mesh2d/mesh_compiler.hpp"
#include "tessera/target/mesh2d/mesh_numerics.hpp"

namespace tessera::target {

namespace {

class MeshPlan : public Plan {
 public:
  explicit MeshPlan(program::Program compiled)
      : program(std::make_shared<const program::Program>(std::move(compiled))) {}
  std::string to_json() const override { return program::to_json(*program); }
  std::string describe() const override { return program::placement_table(*program); }
  std::shared_ptr<const program::Program> program;
};

class MeshValues : public Executor {
 public:
  MeshValues(const program::Program& plan, const ir::Graph& graph, const model::Weights& weights)
      : mesh_(plan, weights, &graph) {}
  std::span<const float> forward(std::span<const int32_t> tokens, bool last_only) override {
    return mesh_.forward(tokens, last_only);
  }
  int64_t max_context() const override { return mesh_.max_context(); }
  int64_t vocab_size() const override { return mesh_.vocab_size(); }
  void reset() override { mesh_.reset(); }
  std::map<std::string, double> activation_density() const override { return mesh_.activation_density(); }
  std::string host_note() const override {
    return fmt::format("{} cores' SRAM arenas (largest {:.1f} KiB)", mesh_.cores_allocated(),
                       static_cast<double>(mesh_.largest_arena_bytes()) / 1024);
  }

 private:
  sim::MeshDataPlane mesh_;
};

class Mesh2dTarget : public Target {
 public:
  using Target::Target;

  Capabilities capabilities() const override {
    return {.pipeline = true,
            .head_groups = false,
            .tensor_parallel = false,
            .batches_requests = false,
            .data_plane = true,
            .core_heatmaps = true,
            .mixture_of_experts = true};
  }

  Compiled compile(const ModelSource& model, const ChipWork& work) const override {
    if (work.tensor_parallel != 1 || work.expert_parallel != 1)
      fail("{} chips do not split layers (tensor or expert parallelism over a group); they form pipelines",
           arch().name);
    if (work.micro_batch != 1)
      fail("{} computes one request per pass; requests in flight are pipelined through its layer stages", arch().name);
    const compiler::LoweredModel& lowered = model.lowered();
    auto result = compiler::compile_for_mesh(
        model.config, model.yaml, model.origin, arch_.spec, arch_.yaml, arch_.origin,
        {.prompt_tokens = work.prompt_tokens,
         .max_new_tokens = work.max_new_tokens,
         .precision = work.precision,
         .requests_in_flight = work.resident(),
         .slice = work.slice,
         .routing = work.routing,
         .lowered = &lowered,
         .placement_model = work.fidelity == Fidelity::Analytic ? sim::FabricModel::Analytic : sim::FabricModel::Fast});
    if (!result.status) return {result.status, nullptr};
    return {result.status, std::make_shared<MeshPlan>(std::move(result.program))};
  }

  std::shared_ptr<const Plan> parse_plan(const std::string& text, const std::string& origin) const override {
    return std::make_shared<MeshPlan>(program::from_json(text, origin));
  }

  TrainingOutcome simulate_training(const ModelSource& model, const TrainingWork& work) const override {
    return simulate_wafer_training(arch_, model, work);
  }

  TrainingValues training_values(const ModelSource& model, const TrainingWork& work) const override {
    return wafer_training_values(arch_, model, work);
  }

  GemmOutcome simulate_gemm(const GemmWork& work) const override { return simulate_mesh_gemm(arch_.spec, work); }

  RunReport simulate(const Plan& plan, const SimulateOptions& options) const override {
    const auto& program = plan_as<MeshPlan>(plan, "mesh2d").program;
    sim::TimingOptions timing;
    timing.record_trace = options.record_trace;
    timing.fabric = options.fidelity == Fidelity::Analytic ? sim::FabricModel::Analytic
                    : options.fidelity == Fidelity::Cycle  ? sim::FabricModel::CycleLevel
                                                           : sim::FabricModel::Fast;
    timing.on_pass = options.on_pass;
    timing.link_loads = options.link_loads;
    timing.activation_density = options.activation_density;
    timing.cycle_region = options.cycle_region;
    sim::MeshReport m = sim::simulate_mesh_timing(*program, timing);
    RunReport r;
    describe_run(r, "mesh2d", *program);
    r.arch_name = m.arch_name, r.model_name = m.model_name;
    r.prefill_s = m.prefill.cycles / m.clock_hz, r.decode_s = m.decode.cycles / m.clock_hz;
    r.time_to_first_token_s = m.time_to_first_token_s;
    r.tokens_per_s_per_user = r.tokens_per_s = m.decode_tokens_per_s;
    r.memory = {"SRAM per core", static_cast<double>(m.sram_high_water_bytes), m.sram_per_core_bytes};
    for (const auto& step : m.decode_steps) {
      const double cycles = step.compute_cycles + step.comm_cycles + step.host_cycles;
      const char* bound = step.comm_cycles >= step.compute_cycles && step.comm_cycles >= step.host_cycles ? "fabric"
                          : step.compute_cycles >= step.host_cycles                                       ? "compute"
                                                                                                          : "host I/O";
      r.last_decode_steps.push_back({step.name, step.pattern, bound, cycles / m.clock_hz,
                                     static_cast<double>(step.macs), 4.0 * static_cast<double>(step.words)});
    }
    r.decode_step_s = m.decode_tokens_per_s > 0 ? 1 / m.decode_tokens_per_s : 0;
    // The wafer's own layer pipeline takes the next request once its slowest stage is free.
    std::map<int32_t, double> stage_cycles;
    for (const auto& s : m.decode_steps) stage_cycles[s.stage] += s.compute_cycles + s.comm_cycles + s.host_cycles;
    for (const auto& [_, cycles] : stage_cycles)
      r.decode_interval_s = std::max(r.decode_interval_s, cycles / m.clock_hz);
    r.prefill_interval_s = m.prefill_interval_s();
    r.energy_per_token_pj = m.decode_energy_per_token.total_pj();
    r.macs_per_token = m.decode_energy_per_token.compute_pj / arch().energy.mac_pj.at(program->precision.activations);
    r.utilization =
        r.macs_per_token * r.tokens_per_s_per_user / arch().peak_macs_per_second(program->precision.activations);
    const auto& d = m.decode;
    r.bound = d.comm_cycles >= d.compute_cycles && d.comm_cycles >= d.host_cycles ? "fabric"
              : d.compute_cycles >= d.host_cycles                                 ? "compute"
                                                                                  : "host I/O";
    r.detail = MeshRun{program, std::move(m)};
    return r;
  }

  std::unique_ptr<Executor> executor(const Plan& plan, const ir::Graph& graph, const model::Weights& weights,
                                     int64_t) const override {
    return std::make_unique<MeshValues>(*plan_as<MeshPlan>(plan, "mesh2d").program, graph, weights);
  }
};

}  // namespace

std::unique_ptr<Target> make_mesh2d_target(ArchSource arch) { return std::make_unique<Mesh2dTarget>(std::move(arch)); }

}  // namespace tessera::target
