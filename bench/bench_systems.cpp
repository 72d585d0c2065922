// Wall time of `tessera compare`'s work: evaluating systems of chips (compile + simulate every
// distinct chip), timing-only, 128-token prompt + 128 decoded tokens, batch 1.
//   ./build/bench/bench_systems
// Target: every row of `compare` on llama3-8b and llama3-70b over all presets under a minute in all.
#include <benchmark/benchmark.h>

#include "tessera/base/fs.hpp"
#include "tessera/system/system.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/registry.hpp"

using namespace tessera;

namespace {

void evaluate(benchmark::State& state, const std::string& model, const std::string& arch, int64_t chips) {
  const std::string root = TESSERA_SOURCE_DIR;
  const std::string model_path = root + "/configs/models/" + model + ".yaml",
                    arch_path = root + "/configs/arch/" + arch + ".yaml";
  const std::string arch_yaml = read_text_file(arch_path);
  const system::Machine machine{target::parse_arch(arch_yaml, arch_path), arch_yaml, arch_path, chips};
  system::Workload work;
  work.model = ir::load_model_config(model_path);
  work.model_yaml = read_text_file(model_path), work.model_origin = model_path;
  work.precision = PrecisionPolicy::uniform("fp16");
  double per_user = 0;
  for (auto _ : state) {
    const auto r = system::evaluate(machine, work);
    if (!r.fits) state.SkipWithError(r.note.c_str());
    per_user = r.tokens_per_s_per_user;
  }
  state.counters["simulated_tok_s_per_user"] = per_user;
}

// One training step, timing-only (`tessera train --arch COUNTxARCH --no-numerics`).
void train_step(benchmark::State& state, const std::string& model, const std::string& arch, int64_t chips,
                int64_t seq) {
  const std::string root = TESSERA_SOURCE_DIR;
  const std::string model_path = root + "/configs/models/" + model + ".yaml";
  const auto chip = target::load_target(root + "/configs/arch/" + arch + ".yaml");
  const target::ModelSource source{ir::load_model_config(model_path), read_text_file(model_path), model_path};
  double tokens_per_s = 0;
  for (auto _ : state) {
    const auto outcome = chip->simulate_training(source, {.chips = chips, .seq = seq});
    if (!outcome.status) state.SkipWithError(outcome.status.message().c_str());
    tokens_per_s = outcome.report.tokens_per_s;
  }
  state.counters["simulated_train_tok_s"] = tokens_per_s;
}

}  // namespace

BENCHMARK_CAPTURE(evaluate, llama3_8b_on_34_gc200, "llama3-8b", "gc200", 34)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(evaluate, llama3_8b_on_h100, "llama3-8b", "h100", 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(evaluate, llama3_8b_on_trn2, "llama3-8b", "trn2", 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(evaluate, llama3_70b_on_8_h100, "llama3-70b", "h100", 8)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(evaluate, llama3_70b_on_6_wse3, "llama3-70b", "wse3", 6)->Unit(benchmark::kSecond)->Iterations(1);

BENCHMARK_CAPTURE(train_step, llama3_70b_on_1024_h100, "llama3-70b", "h100", 1024, 2048)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, gpt2_xl_on_16_wse2, "gpt2-xl", "wse2", 16, 1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, llama3_8b_on_16_wse2, "llama3-8b", "wse2", 16, 2048)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, megatron_1t_on_3072_a100, "megatron-1t", "a100", 3072, 2048)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
