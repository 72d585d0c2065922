// Fast analytical fabric model vs the cycle-level mode, and how long each takes.
//   ./build/bench/fabric_accuracy
// Prints one row per (collective, mesh size): cycles from each model, the error, and wall times.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <functional>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/mesh2d/fabric.hpp"

using namespace tessera;

namespace {

double seconds(const std::function<void()>& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  const auto link = target::load_arch(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/mesh-32x32.yaml").link;
  fmt::print("{:<28} {:>5} {:>10} {:>10} {:>7} {:>9} {:>9}\n", "collective", "mesh", "fast", "cycle", "error",
             "fast ms", "cycle ms");
  for (int n : {8, 16, 32}) {
    const arch::Region all{0, 0, n, n};
    const std::vector<std::pair<std::string, sim::Collective>> cases = {
        {"ring shift x, 256 words", sim::patterns::ring_shift(all, 256, true)},
        {"MeshGEMM step, 64+64 words", sim::patterns::gemm_shift(all, 64, 64)},
        {"row broadcast, 256 words", sim::patterns::row_broadcast(all, 256, 0)},
        {"GEMV allreduce y, 64 words", sim::patterns::ktree_allreduce(all, 64, std::max(2, (int)std::sqrt(n)), false)},
        {"allreduce x, 512 words", sim::patterns::ktree_allreduce(all, 512, 4, true)},
    };
    const sim::MeshFabric mesh(n, n, link);
    for (const auto& [name, collective] : cases) {
      const sim::Collective& c = collective;  // clang 14 cannot capture structured bindings
      sim::CommCost fast, cycle;
      const double fast_s = seconds([&] { fast = mesh.fast_cost(c); });
      const double cycle_s = seconds([&] { cycle = mesh.cycle_level_cost(c); });
      fmt::print("{:<28} {:>5} {:>10.0f} {:>10.0f} {:>6.1f}% {:>9.3f} {:>9.3f}\n", name, fmt::format("{}x{}", n, n),
                 fast.cycles, cycle.cycles, 100 * (fast.cycles - cycle.cycles) / cycle.cycles, fast_s * 1e3,
                 cycle_s * 1e3);
    }
  }
}
