// Design points per minute of `tessera sweep`: each point of configs/sweeps/bench-llama3-8b-decode.yaml
// (wse2 variants at a fixed area, llama3-8b decode, timing-only) built, placed and timed, one
// thread; at the analytic tier the sweep file asks for, and at the flow tier.
//   ./build/bench/bench_sweep
// Target (issue #14): >= 1,000 points per minute on this 2-core machine (two threads).
#include <benchmark/benchmark.h>

#include "tessera/api/sweep.hpp"

using namespace tessera;

namespace {

void points(benchmark::State& state, target::Fidelity fidelity) {
  const sweep::Spec spec =
      api::load_sweep(std::string(TESSERA_SOURCE_DIR) + "/configs/sweeps/bench-llama3-8b-decode.yaml");
  const std::vector<sweep::Point> all = sweep::points(spec);
  size_t next = 0;
  for (auto _ : state) benchmark::DoNotOptimize(sweep::evaluate(spec, all[next++ % all.size()], fidelity));
  state.SetItemsProcessed(state.iterations());  // points per second (x 60: per minute)
}

}  // namespace

BENCHMARK_CAPTURE(points, analytic, target::Fidelity::Analytic)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(96);
BENCHMARK_CAPTURE(points, flow, target::Fidelity::Flow)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(24);

BENCHMARK_MAIN();
