// Wall time of compiling and simulating (timing-only) on the wafer presets.
//   ./build/bench/bench_mesh
// The target: llama3-8b on wse3, 128-token prompt + 128 decoded tokens, under 30 s.
#include <benchmark/benchmark.h>

#include "tessera/base/fs.hpp"
#include "tessera/compiler/mesh_compiler.hpp"
#include "tessera/sim/mesh_timing.hpp"

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
    const auto result =
        compiler::compile_for_mesh(ir::load_model_config(model_path), model_yaml, model_path,
                                   arch::parse_arch(arch_yaml, arch_path), arch_yaml, arch_path, {128, 128, dtype});
    if (!result.status) state.SkipWithError(result.status.message().c_str());
    tokens_per_s = sim::simulate_mesh_timing(result.program).decode_tokens_per_s;
  }
  state.counters["simulated_decode_tok_s"] = tokens_per_s;
}

}  // namespace

BENCHMARK_CAPTURE(compile_and_simulate, llama3_8b_wse3_fp16, "llama3-8b", "wse3", "fp16")
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(compile_and_simulate, gpt2_small_wse2_fp32, "gpt2-small", "wse2", "fp32")
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

BENCHMARK_MAIN();
