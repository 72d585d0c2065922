// Reference executor speed: prefill a 64-token prompt, then decode 64 tokens greedily.
//   ./build/bench/bench_executor
// Counters: prefill_ms, decode_tok_s (decode steps per second), total_tok_s.
#include <benchmark/benchmark.h>

#include "tessera/ir/builders.hpp"
#include "tessera/ref/generate.hpp"

using namespace tessera;

namespace {

void run_generation(benchmark::State& state, const std::string& config_path, bool random) {
  const auto config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + config_path);
  const auto graph = ir::build_model_graph(config);
  const auto weights = random ? model::random_weights(graph, 1) : model::load_weights(graph, *config.weights_path);
  ref::ReferenceExecutor executor(graph, weights, config.context_length);
  std::vector<int32_t> prompt(64);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 11) % 1000);
  ref::GenerationOptions options;
  options.max_new_tokens = 64;
  double prefill = 0, decode = 0;
  int64_t runs = 0;
  for (auto _ : state) {
    const auto result = ref::generate(executor, prompt, options);
    prefill += result.prefill_seconds;
    decode += result.decode_seconds;
    ++runs;
  }
  state.counters["prefill_ms"] = prefill / static_cast<double>(runs) * 1e3;
  state.counters["decode_tok_s"] = 63.0 * static_cast<double>(runs) / decode;
  state.counters["total_tok_s"] = 64.0 * static_cast<double>(runs) / (prefill + decode);
}

}  // namespace

BENCHMARK_CAPTURE(run_generation, default_model, "/models/default/config.yaml", false)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);
BENCHMARK_CAPTURE(run_generation, gpt2_small_random, "/configs/models/gpt2-small.yaml", true)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(5.0);

BENCHMARK_MAIN();
