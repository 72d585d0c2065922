#include "gemm_tiling.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <numeric>

#include "../gemm_work.hpp"
#include "tessera/base/precision.hpp"

namespace tessera::target {

namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// CUTLASS-style CTA tiles (rows x columns of the output) and their K slab, kept `kStages` deep in
// shared memory (the usual multistage pipeline; tessera's assumption, not a measured choice).
// The 16-row tiles are what small-batch decode GEMMs use (a tensor-core MMA is 16 rows tall).
constexpr std::array<std::array<int64_t, 2>, 9> kTiles = {
    {{128, 256}, {256, 128}, {128, 128}, {64, 128}, {128, 64}, {64, 64}, {32, 128}, {16, 256}, {16, 128}}};
constexpr int64_t kSlab = 64;
constexpr int64_t kStages = 3;

}  // namespace

GemmRate gemm_rate(const arch::ArchSpec& a, const std::string& dtype, double mac_density) {
  const auto rows = a.core.matrix_rows.find(dtype);
  return {a.core.macs_per_cycle.at(dtype) * a.gpu.matmul_efficiency,
          rows != a.core.matrix_rows.end() ? static_cast<int64_t>(rows->second) : 0, storage_bits(dtype) / 8,
          mac_density, storage_bits(dtype) / 8};
}

double tile_step_cycles(const arch::ArchSpec& a, const GemmRate& rate, int64_t rows, int64_t cols) {
  const double compute = static_cast<double>(rows * cols) * rate.mac_density / rate.macs_per_sm_cycle;
  if (a.gpu.l2_bytes_per_second <= 0) return compute;
  const double l2_bytes_per_sm_cycle = a.gpu.l2_bytes_per_second / a.clock_hz / static_cast<double>(a.usable.cores());
  const double bytes = static_cast<double>(rows) * rate.element_bytes + static_cast<double>(cols) * rate.weight_bytes;
  return std::max(compute, bytes / l2_bytes_per_sm_cycle);
}

bool workspace_in_l2(const arch::ArchSpec& a, double bytes) {
  return a.gpu.l2_bytes_per_second > 0 && bytes <= a.gpu.l2_bytes;
}

double workspace_seconds(const arch::ArchSpec& a, double bytes) {
  return bytes / (workspace_in_l2(a, bytes) ? a.gpu.l2_bytes_per_second : a.gpu.sustained_hbm_bytes_per_second());
}

double split_k_reduction_seconds(const arch::ArchSpec& a, const GemmTiling& t, double rows, double cols,
                                 double element_bytes) {
  if (!t.reduction_kernel) return 0;
  return a.gpu.kernel_launch_s + workspace_seconds(a, t.workspace_bytes) +
         rows * cols * element_bytes / a.gpu.sustained_hbm_bytes_per_second();
}

std::optional<GemmTiling> fastest_tiling(const arch::ArchSpec& a, const GemmRate& rate,
                                         const std::vector<int64_t>& groups, int64_t n, int64_t k, bool split_k,
                                         double floor_cycles) {
  const int64_t sms = a.usable.cores();
  const int64_t tallest = *std::max_element(groups.begin(), groups.end());
  const auto rows_total = static_cast<double>(std::accumulate(groups.begin(), groups.end(), int64_t{0}));
  const double partial_bytes = rate.weight_only ? rate.element_bytes : storage_bits(a.core.accumulate) / 8;
  std::optional<GemmTiling> best;
  double best_cycles = 0;
  for (const auto& [tm, tn] : kTiles) {
    if (static_cast<double>(kStages * (tm + tn) * kSlab) * rate.element_bytes > a.core.sram_bytes) continue;
    // A matrix unit computes its tile's full height (at least matrix_rows); datapaths without a
    // declared height (fp32 on CUDA cores) compute only the rows there are.
    const int64_t rows = rate.matrix_rows > 0 ? std::max(tm, rate.matrix_rows) : std::min(tallest, tm);
    int64_t tiles = 0;
    for (int64_t g : groups) tiles += cdiv(g, tm) * cdiv(n, tn);
    // Split K over otherwise idle SMs (as cuBLAS does for small outputs), a slab at least each:
    // no split, the widest split, and the powers of two between are the candidates.
    const int64_t widest = split_k ? std::max<int64_t>(1, std::min(sms / tiles, k / kSlab)) : 1;
    for (int64_t split = 1;; split = std::min(2 * split, widest)) {
      GemmTiling t{rows,
                   tn,
                   cdiv(k, split),
                   tiles * split,
                   cdiv(tiles * split, sms),
                   split,
                   0,
                   static_cast<double>(kStages * (tm + tn) * kSlab) * rate.element_bytes,
                   split > 1 ? static_cast<double>(split) * rows_total * static_cast<double>(n) * partial_bytes : 0,
                   split > 1 && !rate.weight_only};
      t.cycles = static_cast<double>(t.waves) * static_cast<double>(t.tile_k) * tile_step_cycles(a, rate, rows, tn);
      // What the choice weighs: the waves or the memory traffic (workspace writes included), then
      // the reduction kernel.
      const double total =
          std::max(t.cycles, floor_cycles + workspace_seconds(a, t.kernel_workspace_bytes()) * a.clock_hz) +
          split_k_reduction_seconds(a, t, rows_total, static_cast<double>(n), rate.element_bytes) * a.clock_hz;
      if (!best || total < best_cycles) best = t, best_cycles = total;
      if (split == widest) break;
    }
  }
  return best;
}

AttentionWaves attention_waves(const arch::ArchSpec& a, int64_t sequences, int64_t heads, int64_t tokens) {
  AttentionWaves w;
  w.ctas = sequences * heads * cdiv(tokens, kFlashAttentionQueryBlock);
  w.waves = cdiv(w.ctas, a.usable.cores());
  return w;
}

GemmOutcome time_tiled_gemm(const arch::ArchSpec& a, const GemmWork& work) {
  gemm_mac_rate(a, work);  // the request's checks
  if (!work.algorithm.empty() && work.algorithm != "tiled")
    fail("no GEMM algorithm '{}' on {}: it runs one, 'tiled' (CTA tiles in waves over its {} SMs)", work.algorithm,
         a.name, a.usable.cores());
  if (work.fidelity != Fidelity::Flow) fail("{} has one timing tier (no mesh fabric to time at another)", a.name);
  const GemmRate rate = gemm_rate(a, work.dtype);
  const double m = static_cast<double>(work.m), k = static_cast<double>(work.k), n = static_cast<double>(work.n);
  const double hbm_bytes = (m * k + k * n + m * n) * rate.element_bytes;
  GemmOutcome out;
  out.peak_macs_per_s = static_cast<double>(a.usable.cores()) * a.core.macs_per_cycle.at(work.dtype) * a.clock_hz;
  if (hbm_bytes > a.gpu.hbm_bytes) {
    GemmAlgorithmResult r;
    r.algorithm = "tiled";
    r.does_not_fit = fmt::format("A, B and C take {:.4g} GB of the {:.4g} GB of HBM; split the product",
                                 hbm_bytes / 1e9, a.gpu.hbm_bytes / 1e9);
    out.layout = fmt::format("{} cores (SMs)", a.usable.cores());
    out.algorithms.push_back(r);
    return out;
  }
  const double memory_cycles = hbm_bytes / a.gpu.sustained_hbm_bytes_per_second() * a.clock_hz;
  const auto tiling = fastest_tiling(a, rate, {work.m}, work.n, work.k, true, memory_cycles);
  if (!tiling)
    fail("no GEMM tile's pipeline fits {}'s {:.0f} KiB of shared memory per SM", a.name, a.core.sram_bytes / 1024);
  const int64_t split = tiling->split;
  out.layout = fmt::format("{} cores (SMs); CTA tiles of {} x {} x {}{}, {} CTAs in {} wave{}", a.usable.cores(),
                           tiling->tile_m, tiling->tile_n, tiling->tile_k,
                           split > 1 ? fmt::format(" (K split {} ways, then a reduction kernel)", split) : "",
                           tiling->ctas, tiling->waves, tiling->waves > 1 ? "s" : "");
  if (work.values)
    out.values_note =
        "values not computed: a GPU's product sums in its vendor library's order (tessera's GPU values are the "
        "reference executor's)";
  GemmAlgorithmResult r;
  r.algorithm = "tiled";
  r.description = "CTA tiles in waves over the SMs, each tile no faster than L2 feeds it (docs/gpu-model.md)";
  r.memory_bytes = tiling->shared_memory_bytes, r.memory_available_bytes = a.core.sram_bytes;
  r.steps = tiling->waves;
  r.compute_s = tiling->cycles / a.clock_hz;
  // A split K's GEMM writes its partial sums instead of C; the reduction kernel writes C.
  const double c_bytes = tiling->reduction_kernel ? m * n * rate.element_bytes : 0;
  const double memory_s = (hbm_bytes - c_bytes) / a.gpu.sustained_hbm_bytes_per_second() +
                          workspace_seconds(a, tiling->kernel_workspace_bytes());
  r.seconds = a.gpu.kernel_launch_s + std::max(r.compute_s, memory_s) +
              split_k_reduction_seconds(a, *tiling, m, n, rate.element_bytes);
  r.communication_s = r.seconds - r.compute_s;
  r.bound = memory_s > r.compute_s ? "memory" : "compute";
  r.energy.compute_j = m * k * n * a.energy.mac_pj.at(work.dtype) * 1e-12;
  r.energy.memory_j = hbm_bytes * a.energy.hbm_pj_per_byte * 1e-12;
  out.algorithms.push_back(r);
  out.chosen = 0;
  return out;
}

}  // namespace tessera::target
