// Wall time of compiling and simulating (timing-only) on the wafer presets.
//   ./build/bench/bench_mesh
// Targets: llama3-8b timing-only on wse3, 128-token prompt + 128 decoded tokens, under 30 s; gpt2-small
// with values on wse2 (its per-core data plane) at most 1.5x the reference executor's time per
// decoded token (bench/bench_executor, gpt2_small_random) and under 2 GB of host memory; the
// fidelity tiers timing one mesh-32x32 plan (the default model, 64 + 64 tokens): the analytic tier at
// least 1,000x faster than the cycle-level one; one matrix product alone (`tessera gemm`) on the
// whole wse2 (750 x 750 cores) under 10 s per algorithm, and with values on 64 x 64 cores.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/mesh2d/mesh_compiler.hpp"
#include "tessera/target/mesh2d/mesh_numerics.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/registry.hpp"

using namespace tessera;

namespace {

void compile_and_simulate(benchmark::State& state, const std::string& model, const std::string& arch,
                          const std::string& dtype) {
  const std::string root = TESSERA_SOURCE_DIR;
  const std::string model_path = root + "/configs/models/" + model + ".yaml",
                    arch_path = root + "/configs/arch/" + arch + ".yaml";
  const std::string model_yaml = read_text_file(model_path), arch_yaml = read_text_file(arch_path);
  double tokens_per_s = 0;
  for (auto _ : state) {
    const auto result = compiler::compile_for_mesh(ir::load_model_config(model_path), model_yaml, model_path,
                                                   target::parse_arch(arch_yaml, arch_path), arch_yaml, arch_path,
                                                   {128, 128, PrecisionPolicy::uniform(dtype)});
    if (!result.status) state.SkipWithError(result.status.message().c_str());
    tokens_per_s = sim::simulate_mesh_timing(result.program).decode_tokens_per_s;
  }
  state.counters["simulated_decode_tok_s"] = tokens_per_s;
}

// One compiled plan timed at a fidelity tier (the plan compiled once; each iteration starts with
// an empty cost cache, as a run does): the default model on mesh-32x32, a 64-token prompt and
// state.range(0) generated tokens.
void simulate_at(benchmark::State& state, sim::FabricModel tier) {
  const std::string root = TESSERA_SOURCE_DIR;
  const std::string model_path = root + "/models/default/config.yaml",
                    arch_path = root + "/configs/arch/mesh-32x32.yaml";
  const std::string model_yaml = read_text_file(model_path), arch_yaml = read_text_file(arch_path);
  const auto plan = compiler::compile_for_mesh(ir::load_model_config(model_path), model_yaml, model_path,
                                               target::parse_arch(arch_yaml, arch_path), arch_yaml, arch_path,
                                               {64, state.range(0), {}})
                        .program;
  sim::TimingOptions options;
  options.fabric = tier;
  double tokens_per_s = 0;
  for (auto _ : state) tokens_per_s = sim::simulate_mesh_timing(plan, options).decode_tokens_per_s;
  state.counters["simulated_decode_tok_s"] = tokens_per_s;
}

}  // namespace

BENCHMARK_CAPTURE(simulate_at, analytic, sim::FabricModel::Analytic)
    ->Arg(2)
    ->Arg(64)
    ->Arg(192)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(simulate_at, flow, sim::FabricModel::Fast)->Arg(64)->Arg(192)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(simulate_at, cycle, sim::FabricModel::CycleLevel)->Arg(64)->Arg(192)->Unit(benchmark::kMicrosecond);

// gpt2-small (seeded random weights) with values on the full wse2: a 64-token prompt, then 16
// decoded tokens. Counters: host seconds per decoded token, peak host memory.
void gpt2_small_numerics_on_wse2(benchmark::State& state) {
  const std::string root = TESSERA_SOURCE_DIR;
  const std::string model_path = root + "/configs/models/gpt2-small.yaml", arch_path = root + "/configs/arch/wse2.yaml";
  const auto config = ir::load_model_config(model_path);
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::random_weights(graph, 1);
  const std::string arch_yaml = read_text_file(arch_path);
  const auto plan =
      compiler::compile_for_mesh(config, read_text_file(model_path), model_path,
                                 target::parse_arch(arch_yaml, arch_path), arch_yaml, arch_path, {64, 16, {}})
          .program;
  std::vector<int32_t> prompt(64);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 11) % 1000);
  double per_token = 0;
  for (auto _ : state) {
    sim::MeshDataPlane mesh(plan, weights);
    ref::GenerationOptions options;
    options.max_new_tokens = 16;
    const auto result = ref::generate(mesh, prompt, options);
    per_token = result.decode_seconds / 15;
    state.counters["prefill_s"] = result.prefill_seconds;
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["s_per_decoded_token"] = per_token;
  state.counters["peak_host_GB"] = static_cast<double>(usage.ru_maxrss) / 1e6;
}

// `tessera gemm` on wse2: one algorithm, timed at the flow tier (and with values where given).
void gemm_on_wse2(benchmark::State& state, const char* algorithm, int64_t size, int64_t cores, bool values) {
  const auto wafer = target::load_target(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/wse2.yaml");
  const target::GemmWork work{
      .m = size, .k = size, .n = size, .dtype = "fp32", .algorithm = algorithm, .cores = cores, .values = values};
  double tflops = 0;
  for (auto _ : state) {
    const auto o = wafer->simulate_gemm(work);
    tflops = work.flops() / o.algorithms.at(0).seconds / 1e12;
  }
  state.counters["simulated_tflops"] = tflops;
}

BENCHMARK_CAPTURE(gemm_on_wse2, summa_33000_on_750, "summa", 33000, 750, false)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(gemm_on_wse2, meshgemm_33000_on_750, "meshgemm", 33000, 750, false)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(gemm_on_wse2, meshgemm_values_640_on_64, "meshgemm", 640, 64, true)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK(gpt2_small_numerics_on_wse2)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(compile_and_simulate, llama3_8b_wse3_fp16, "llama3-8b", "wse3", "fp16")
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(compile_and_simulate, gpt2_small_wse2_fp32, "gpt2-small", "wse2", "fp32")
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

BENCHMARK_MAIN();
