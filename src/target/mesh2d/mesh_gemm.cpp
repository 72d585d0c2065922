// A matrix product C[m, n] = A[m, k] x B[k, n] as a kernel of its own on a P x P grid of a mesh2d
// chip's cores, with the three 2D algorithms of SPATIAL_MACHINES.md (sections 2.3 and 5):
//
//  - SUMMA (Cerebras' gemm-collectives_2d): at step s, column s multicasts its A tiles along the
//    rows and row s its B tiles down the columns; every core adds A(y, s) x B(s, x) to its C tile.
//  - Cannon: from skewed tiles, A tiles shift one place along the rows and B tiles one place down
//    the columns each step (torus order: the wrap-around flow crosses the whole line).
//  - MeshGEMM (WaferLLM, OSDI'25): Cannon's shifts on interleaved rings, every step at most two hops.
//  - MeshGEMV (WaferLLM's decode GEMV, for any M): B stays where it is; every core multiplies the
//    M rows of its row's A segment by its B tile, and a two-level K-tree allreduce sums the partial
//    products down each column while they are computed, as a decode plan's projection does.
//
// In the first three C stays on its core (output-stationary). The host loads A and B in the layout each algorithm
// starts from: for SUMMA core (x, y) holds A(y, x) and B(y, x); for the shifting ones the tiles
// are pre-skewed as Cannon's first step needs them (WaferLLM's launcher does this for its
// operands), so no algorithm is charged an on-chip alignment. Tiles are ceil(m / P) x ceil(k / P)
// and ceil(k / P) x ceil(n / P), zero-padded. Every collective is a sim::Collective timed by the
// fabric model (flow or cycle tier); the values are computed by moving each core's tiles along
// those same flows, so a flow that goes to the wrong core gives a wrong C.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "../gemm_work.hpp"
#include "mesh2d_gemm.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/target/mesh2d/fabric.hpp"
#include "tessera/target/mesh2d/program.hpp"

namespace tessera::target {

namespace {

using sim::Collective;
using sim::Coord;

enum class Algorithm { Summa, Cannon, MeshGemm, MeshGemv };

struct AlgorithmInfo {
  Algorithm algorithm;
  const char* name;
  const char* description;
};

constexpr AlgorithmInfo kAlgorithms[] = {
    {Algorithm::Summa, "summa",
     "SUMMA: step s multicasts column s's A tiles along the rows and row s's B tiles down the columns"},
    {Algorithm::Cannon, "cannon",
     "Cannon: A tiles shift along the rows and B tiles down the columns in torus order (the wrap-around "
     "crosses the grid)"},
    {Algorithm::MeshGemm, "meshgemm", "MeshGEMM: Cannon's shifts on interleaved rings, every step at most 2 hops"},
    {Algorithm::MeshGemv, "meshgemv",
     "MeshGEMV: B stays; each core multiplies its row's A segment (every row of A) by its B tile and a K-tree "
     "allreduce sums the partial products down each column as they are computed"},
};

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The most work the data plane does for a product's values (a few seconds on this host).
constexpr double kMaxMeshValueWork = 1 << 28;

struct Grid {
  arch::Region region;
  int32_t p = 1;
  int64_t mt = 0, kt = 0, nt = 0;  // tile sizes, padded
  size_t index(Coord c) const {
    return static_cast<size_t>(c.y - region.y) * static_cast<size_t>(p) + static_cast<size_t>(c.x - region.x);
  }
  Coord at(int32_t x, int32_t y) const {
    return {static_cast<int32_t>(region.x + x), static_cast<int32_t>(region.y + y)};
  }
};

// ring[pos]: the position's index in the cyclic shift's ring (ring_next from position 0), and
// position[i]: the position at ring index i.
struct Ring {
  std::vector<int32_t> index, position;
  Ring(int32_t n, bool interleaved) : index(static_cast<size_t>(n)), position(static_cast<size_t>(n)) {
    int32_t pos = 0;
    for (int32_t i = 0; i < n; ++i) {
      index[static_cast<size_t>(pos)] = i, position[static_cast<size_t>(i)] = pos;
      pos = sim::patterns::ring_next(pos, n, interleaved);
    }
  }
};

int32_t mod(int64_t a, int32_t p) { return static_cast<int32_t>(((a % p) + p) % p); }

Collective joined(Collective a, const Collective& b) {
  a.flows.insert(a.flows.end(), b.flows.begin(), b.flows.end());
  return a;
}

// The data plane. The host's tiles of an operand never change once written; what a core holds is
// which of them it has (`Holding`), so a transfer copies that index along the flow.
using Tiles = std::vector<std::vector<float>>;
using Holding = std::vector<uint32_t>;  // per core (y * P + x): the tile it holds

// Each flow's destinations receive its source's tile; other cores keep their own.
Holding moved(const Collective& c, const Grid& g, const Holding& holding) {
  Holding out = holding;
  for (const auto& f : c.flows)
    for (const Coord& d : f.dsts) out[g.index(d)] = holding[g.index(f.src)];
  return out;
}

// The host's layout of a rows x cols matrix cut into P x P tiles of tr x tc (zero-padded):
// tile (y, x) at index y * P + x, first held by core (x, y).
Tiles natural_tiles(const Grid& g, const std::vector<float>& matrix, int64_t rows, int64_t cols, int64_t tr,
                    int64_t tc) {
  Tiles t(static_cast<size_t>(g.p) * static_cast<size_t>(g.p), std::vector<float>(static_cast<size_t>(tr * tc), 0.f));
  for (int32_t y = 0; y < g.p; ++y)
    for (int32_t x = 0; x < g.p; ++x) {
      auto& tile = t[static_cast<size_t>(y) * static_cast<size_t>(g.p) + static_cast<size_t>(x)];
      for (int64_t r = 0; r < tr; ++r)
        for (int64_t c = 0; c < tc; ++c) {
          const int64_t gr = y * tr + r, gc = x * tc + c;
          if (gr < rows && gc < cols)
            tile[static_cast<size_t>(r * tc + c)] = matrix[static_cast<size_t>(gr * cols + gc)];
        }
    }
  return t;
}

Holding natural_holding(const Grid& g) {
  Holding h(static_cast<size_t>(g.p) * static_cast<size_t>(g.p));
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint32_t>(i);
  return h;
}

// Cannon's first step: the core at ring indices (i, j) of its row and column holds A(y, k) and
// B(k, x) with k = -(i + j) mod P; every shift along the rings then advances k by one on every
// core, so P steps see every k once. The host writes the tiles there (as WaferLLM's launcher
// pre-skews its operands), so the shifting algorithms start without an on-chip alignment.
Holding skewed(const Grid& g, const Ring& ring, bool a) {
  Holding out(static_cast<size_t>(g.p) * static_cast<size_t>(g.p));
  for (int32_t y = 0; y < g.p; ++y)
    for (int32_t x = 0; x < g.p; ++x) {
      const int32_t k = mod(-ring.index[static_cast<size_t>(x)] - ring.index[static_cast<size_t>(y)], g.p);
      out[static_cast<size_t>(y) * static_cast<size_t>(g.p) + static_cast<size_t>(x)] =
          static_cast<uint32_t>(a ? y * g.p + k : k * g.p + x);
    }
  return out;
}

// Every core adds the product of the A and B tiles it holds to its C tile.
void multiply_add(const Grid& g, const Tiles& a_tiles, const Holding& a, const Tiles& b_tiles, const Holding& b,
                  Tiles& c) {
  for (size_t core = 0; core < c.size(); ++core) {
    const auto &at = a_tiles[a[core]], &bt = b_tiles[b[core]];
    auto& ct = c[core];
    for (int64_t i = 0; i < g.mt; ++i)
      for (int64_t l = 0; l < g.kt; ++l) {
        const float x = at[static_cast<size_t>(i * g.kt + l)];
        if (x == 0.f) continue;
        for (int64_t j = 0; j < g.nt; ++j)
          ct[static_cast<size_t>(i * g.nt + j)] += x * bt[static_cast<size_t>(l * g.nt + j)];
      }
  }
}

class GemmModel {
 public:
  GemmModel(const arch::ArchSpec& arch, const GemmWork& work)
      : arch_(arch),
        work_(work),
        fabric_(static_cast<int32_t>(arch.grid_width), static_cast<int32_t>(arch.grid_height), arch.link) {
    rate_ = gemm_mac_rate(arch, work);
    if (work.fidelity == Fidelity::Analytic)
      fail("a GEMM is timed with the flow tier (the default) or the cycle tier; the analytic tier times plans");
    const int64_t side = std::min(arch.usable.width, arch.usable.height);
    if (work.cores < 0 || work.cores > side)
      fail("a grid of {} x {} cores: {} has at most {} x {} (its usable region is {} x {})", work.cores, work.cores,
           arch.name, side, side, arch.usable.width, arch.usable.height);
    grid_.p = static_cast<int32_t>(work.cores > 0 ? work.cores : side);
    grid_.region = {arch.usable.x, arch.usable.y, grid_.p, grid_.p};
    grid_.mt = cdiv(work.m, grid_.p), grid_.kt = cdiv(work.k, grid_.p), grid_.nt = cdiv(work.n, grid_.p);
    eb_ = storage_bits(work.dtype) / 8;
    acc_bytes_ = arch.core.accumulate == "fp32" ? 4 : 2;
    a_words_ = cdiv(static_cast<int64_t>(std::ceil(static_cast<double>(grid_.mt * grid_.kt) * eb_)), 4);
    b_words_ = cdiv(static_cast<int64_t>(std::ceil(static_cast<double>(grid_.kt * grid_.nt) * eb_)), 4);
    // A tile product: kt multiply-adds per element of C's tile, counted as a plan's matmul steps are.
    step_issue_ =
        static_cast<double>(program::vector_instructions(grid_.kt, grid_.mt, grid_.nt)) * arch.core.vector_op_cycles;
    step_compute_ = std::ceil(tile_macs() / rate_ + step_issue_);
    if (work.values) {
      // The data plane's work: P^3 tile moves and P^3 tile products, padded tiles included (a
      // move costs this host about what a multiply-add does, counted at 16).
      const double p = grid_.p, moves = p * p * p, macs = moves * tile_macs();
      if (16 * moves + macs > kMaxMeshValueWork) {
        operands_.not_computed = fmt::format(
            "values not computed: on {0} x {0} cores the data plane moves {1:.3g} tiles and multiplies {2:.3g} "
            "padded elements, beyond what tessera computes on this host ({3:.3g}); give fewer --cores (or "
            "--no-numerics: time only)",
            grid_.p, moves, macs, kMaxMeshValueWork);
      } else {
        operands_ = gemm_operands(work);
        values_ = operands_.not_computed.empty();
      }
    }
  }

  GemmOutcome run() {
    GemmOutcome out;
    out.layout = fmt::format(
        "{0} x {0} cores from ({1}, {2}); each holds an A tile of {3} x {4}, a B tile of {4} x {5} and its C tile "
        "of {3} x {5} ({6} x {7} x {8}, padded to multiples of {0})",
        grid_.p, grid_.region.x, grid_.region.y, grid_.mt, grid_.kt, grid_.nt, work_.m, work_.k, work_.n);
    out.peak_macs_per_s = static_cast<double>(grid_.p) * grid_.p * rate_ * arch_.clock_hz;
    bool known = work_.algorithm.empty();
    for (const auto& info : kAlgorithms) {
      if (!work_.algorithm.empty() && work_.algorithm != info.name) continue;
      known = true;
      out.algorithms.push_back(time(info));
      if (values_ && out.algorithms.back().does_not_fit.empty())
        out.algorithms.back().max_abs_error =
            info.algorithm == Algorithm::MeshGemv ? gemv_error() : error_of(compute(info.algorithm));
    }
    if (!known)
      fail(
          "no GEMM algorithm '{}' on mesh2d machines: give summa, cannon, meshgemm or meshgemv (or none: all, the "
          "fastest chosen)",
          work_.algorithm);
    for (size_t i = 0; i < out.algorithms.size(); ++i)
      if (out.algorithms[i].does_not_fit.empty() &&
          (out.chosen < 0 || out.algorithms[i].seconds < out.algorithms[static_cast<size_t>(out.chosen)].seconds))
        out.chosen = static_cast<int>(i);
    out.max_abs_product = operands_.max_abs_product;
    out.values_note = operands_.not_computed;
    return out;
  }

 private:
  // A core's multiply-adds per step (in double: a padded tile of a large product overflows 64 bits).
  double tile_macs() const {
    return static_cast<double>(grid_.mt) * static_cast<double>(grid_.kt) * static_cast<double>(grid_.nt);
  }

  sim::CommCost cost(const Collective& c) const {
    return work_.fidelity == Fidelity::Cycle ? fabric_.cycle_level_cost(c) : fabric_.fast_cost(c);
  }

  // Per core: A and B tiles in `operand_copies` copies each (own and buffers), C in the accumulator.
  double memory_bytes(int operand_copies, int32_t p) const {
    const double mt = static_cast<double>(cdiv(work_.m, p)), kt = static_cast<double>(cdiv(work_.k, p)),
                 nt = static_cast<double>(cdiv(work_.n, p));
    return operand_copies * (mt * kt + kt * nt) * eb_ + mt * nt * acc_bytes_;
  }

  // The smallest grid larger than this one whose cores hold `bytes_per_core(side)`; 0 if none does.
  template <typename BytesPerCore>
  int64_t smallest_grid_holding(const BytesPerCore& bytes_per_core) const {
    const int64_t side = std::min(arch_.usable.width, arch_.usable.height);
    for (int64_t p = grid_.p + 1; p <= side; ++p)
      if (bytes_per_core(static_cast<int32_t>(p)) <= arch_.usable_sram_per_core()) return p;
    return 0;
  }

  std::string does_not_fit(int operand_copies, const char* buffers) const {
    const double bytes = memory_bytes(operand_copies, grid_.p), usable = arch_.usable_sram_per_core();
    if (bytes <= usable) return "";
    const int64_t fits = smallest_grid_holding([&](int32_t p) { return memory_bytes(operand_copies, p); });
    return fmt::format("needs {:.1f} KiB per core ({}; C in {}) of the {:.1f} KiB usable: {}", bytes / 1024, buffers,
                       arch_.core.accumulate, usable / 1024,
                       fits ? fmt::format("a grid of {0} x {0} cores holds it (--cores {0})", fits)
                            : fmt::format("no grid of {} holds it; split the product", arch_.name));
  }

  GemmAlgorithmResult time(const AlgorithmInfo& info) const {
    GemmAlgorithmResult r;
    r.algorithm = info.name, r.description = info.description;
    r.memory_available_bytes = arch_.usable_sram_per_core();
    r.steps = grid_.p;
    if (info.algorithm == Algorithm::MeshGemv) return time_gemv(r);
    const double clock = arch_.clock_hz, p = grid_.p;
    double cycles = 0, hops = 0, received_words = 0;
    if (info.algorithm == Algorithm::Summa) {
      // Double-buffered panels (the next step's tiles arrive while this one multiplies) where they
      // fit, else one receive buffer per operand and the broadcasts wait for the arithmetic.
      const bool overlapped = memory_bytes(3, grid_.p) <= arch_.usable_sram_per_core();
      const int copies = overlapped ? 3 : 2;
      r.memory_bytes = memory_bytes(copies, grid_.p);
      r.does_not_fit = does_not_fit(copies, overlapped ? "A and B tiles, each with two receive buffers"
                                                       : "A and B tiles, each with one receive buffer");
      r.description += overlapped ? " (receive buffers doubled: broadcasts overlap the arithmetic)"
                                  : " (one receive buffer each: broadcasts wait for the arithmetic)";
      if (!r.does_not_fit.empty()) return r;
      // A step's broadcasts differ from root to root only in how far their farthest core is:
      // max(s, P - 1 - s) hops, the same for s and P - 1 - s. The fabric times the nearest and the
      // farthest roots (the grid's middle and its edge); the others lie on the line through them
      // (exact where the tier is affine in the distance: tested against timing every root).
      const auto broadcasts = [&](int32_t root) {
        return cost(joined(sim::patterns::line_broadcast(grid_.region, a_words_, root, true),
                           sim::patterns::line_broadcast(grid_.region, b_words_, root, false)));
      };
      const int32_t near = (grid_.p - 1) / 2;
      const sim::CommCost edge = broadcasts(0), middle = near > 0 ? broadcasts(near) : edge;
      const double far_hops = grid_.p - 1, near_hops = grid_.p - 1 - near;
      for (int32_t s = 0; s < grid_.p; ++s) {
        const double hops_out = std::max(s, grid_.p - 1 - s);
        const double t = far_hops > near_hops ? (hops_out - near_hops) / (far_hops - near_hops) : 1;
        const double broadcast = middle.cycles + t * (edge.cycles - middle.cycles);
        hops += static_cast<double>(middle.word_hops) + t * static_cast<double>(edge.word_hops - middle.word_hops);
        cycles += overlapped && s > 0 ? std::max(broadcast, step_compute_) : broadcast + (s > 0 ? step_compute_ : 0);
      }
      cycles += step_compute_;
      received_words = p * p * (p - 1) * static_cast<double>(a_words_ + b_words_);  // every core but the roots
    } else {
      const bool interleaved = info.algorithm == Algorithm::MeshGemm;
      r.memory_bytes = memory_bytes(2, grid_.p);
      r.does_not_fit = does_not_fit(2, "A and B tiles double-buffered");
      if (!r.does_not_fit.empty()) return r;
      const sim::CommCost shift = cost(sim::patterns::gemm_shift(grid_.region, a_words_, b_words_, interleaved));
      cycles = (p - 1) * std::max(step_compute_, shift.cycles) + step_compute_;
      hops = (p - 1) * static_cast<double>(shift.word_hops);
      received_words = (p - 1) * p * p * static_cast<double>(a_words_ + b_words_);
    }
    r.compute_s = p * step_compute_ / clock;
    r.issue_s = p * step_issue_ / clock;
    r.seconds = cycles / clock;
    r.communication_s = r.seconds - r.compute_s;
    r.word_hops = hops;
    r.bound = r.communication_s > r.compute_s ? "fabric" : "compute";
    // Every core multiplies its whole (padded) tiles, reading an operand element per multiply-add
    // and writing its C tile once, as a plan's matmul steps count SRAM (mesh_compiler.cpp); each
    // received tile is written once.
    const double macs = p * p * p * tile_macs();
    const double c_bytes = p * p * static_cast<double>(grid_.mt) * static_cast<double>(grid_.nt) * acc_bytes_;
    const auto& e = arch_.energy;
    const double sram_pj_per_byte = (e.sram_read_pj_per_byte + e.sram_write_pj_per_byte) / 2;
    r.energy.compute_j = macs * e.mac_pj.at(work_.dtype) * 1e-12;
    r.energy.memory_j = (macs * eb_ + c_bytes + 4 * received_words) * sram_pj_per_byte * 1e-12;
    r.energy.communication_j = hops * 4 * e.fabric_pj_per_byte_hop * 1e-12;
    return r;
  }

  // MeshGEMV per core: its row's A segment (m x kt), its B tile, its partial products and the
  // partial sums arriving from the next core of its chain (m x nt each, in the accumulator).
  double gemv_memory_bytes(int32_t p) const {
    const double m = static_cast<double>(work_.m), kt = static_cast<double>(cdiv(work_.k, p)),
                 nt = static_cast<double>(cdiv(work_.n, p));
    return (m * kt + kt * nt) * eb_ + 2 * m * nt * acc_bytes_;
  }

  // The K-tree's group: about the square root of the column, as a decode plan's (mesh_compiler.cpp).
  int32_t gemv_group() const { return static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(grid_.p)))); }

  GemmAlgorithmResult time_gemv(GemmAlgorithmResult r) const {
    r.steps = 1;
    r.memory_bytes = gemv_memory_bytes(grid_.p);
    if (r.memory_bytes > arch_.usable_sram_per_core()) {
      const int64_t fits = smallest_grid_holding([this](int32_t p) { return gemv_memory_bytes(p); });
      r.does_not_fit = fmt::format(
          "needs {:.1f} KiB per core (every row of A's segment, a B tile, partial sums and their receive buffer in "
          "{}) of the {:.1f} KiB usable: {}",
          r.memory_bytes / 1024, arch_.core.accumulate, arch_.usable_sram_per_core() / 1024,
          fits ? fmt::format("a grid of {0} x {0} cores holds it (--cores {0})", fits)
               : std::string("no grid holds it; a tiled algorithm (summa, cannon, meshgemm) splits A's rows too"));
      return r;
    }
    // Every column reduces m x nt partial sums (32-bit words); the columns use disjoint links, so one
    // is costed and its traffic counted once per column.
    const double m = static_cast<double>(work_.m), p = grid_.p, nt = static_cast<double>(grid_.nt);
    const arch::Region column{0, 0, 1, grid_.p};
    const auto words = static_cast<int64_t>(m * nt);
    const sim::CommCost all = cost(sim::patterns::ktree_allreduce(column, words, gemv_group(), false));
    const sim::CommCost one = cost(sim::patterns::ktree_allreduce(column, 1, gemv_group(), false));
    // kt multiply-adds per element of the core's m x nt partial products, as a decode projection's.
    const double issue =
        static_cast<double>(program::vector_instructions(grid_.kt, work_.m, grid_.nt)) * arch_.core.vector_op_cycles;
    const double compute = std::ceil(m * static_cast<double>(grid_.kt) * nt / rate_ + issue);
    const double cycles = sim::streamed_cycles(compute, all, one, arch_.link.bytes_per_cycle / 4);
    r.compute_s = compute / arch_.clock_hz;
    r.issue_s = issue / arch_.clock_hz;
    r.seconds = cycles / arch_.clock_hz;
    r.communication_s = r.seconds - r.compute_s;
    r.word_hops = static_cast<double>(all.word_hops) * p;
    r.bound = r.communication_s > r.compute_s ? "fabric" : "compute";
    // Every core reads an operand element per multiply-add, writes its partial sums, and receives
    // a partial sum and the result per output element.
    const double macs = p * p * m * static_cast<double>(grid_.kt) * nt, outputs = p * p * m * nt;
    const auto& e = arch_.energy;
    const double sram_pj_per_byte = (e.sram_read_pj_per_byte + e.sram_write_pj_per_byte) / 2;
    r.energy.compute_j = macs * e.mac_pj.at(work_.dtype) * 1e-12;
    r.energy.memory_j = (macs * eb_ + outputs * acc_bytes_ + 2 * 4 * outputs) * sram_pj_per_byte * 1e-12;
    r.energy.communication_j = r.word_hops * 4 * e.fabric_pj_per_byte_hop * 1e-12;
    return r;
  }

  // MeshGEMV's C, summed as the K-tree sums it (fabric.hpp, KTreeShape): each group's halves
  // down their chains into its root, which adds the one from below, then the one from above; the
  // roots the same way into the line's root.
  double gemv_error() const {
    const int64_t m = work_.m, kt = grid_.kt, nt = grid_.nt, p = grid_.p;
    const sim::patterns::KTreeShape tree(p, gemv_group());
    using Sums = std::vector<float>;
    const auto add = [](Sums into, const Sums& more) {
      for (size_t e = 0; e < into.size(); ++e) into[e] += more[e];
      return into;
    };
    // What reaches `to` along a chain of the sums at positions from .. to (exclusive) toward it.
    const auto chain = [&](const std::vector<Sums>& sums, int64_t from, int64_t to) {
      Sums acc = sums[static_cast<size_t>(from)];
      for (int64_t q = from + (to > from ? 1 : -1); q != to; q += to > from ? 1 : -1)
        acc = add(sums[static_cast<size_t>(q)], acc);
      return acc;
    };
    // A root's own sum plus the chains from below and from above (first..root, root..last).
    const auto converge = [&](const std::vector<Sums>& sums, int64_t first, int64_t root, int64_t last) {
      Sums total = sums[static_cast<size_t>(root)];
      if (root < last) total = add(total, chain(sums, last, root));
      if (root > first) total = add(total, chain(sums, first, root));
      return total;
    };
    double worst = 0;
    std::vector<Sums> partial(static_cast<size_t>(p), Sums(static_cast<size_t>(m * nt)));
    for (int64_t x = 0; x < p; ++x) {
      for (int64_t y = 0; y < p; ++y) {
        auto& out = partial[static_cast<size_t>(y)];
        std::fill(out.begin(), out.end(), 0.f);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t l = y * kt; l < std::min(work_.k, (y + 1) * kt); ++l) {
            const float a = operands_.a[static_cast<size_t>(i * work_.k + l)];
            for (int64_t j = 0; j < nt && x * nt + j < work_.n; ++j)
              out[static_cast<size_t>(i * nt + j)] += a * operands_.b[static_cast<size_t>(l * work_.n + x * nt + j)];
          }
      }
      std::vector<Sums> roots;
      for (int64_t k = 0; k < tree.groups; ++k)
        roots.push_back(converge(partial, tree.first(k), tree.root(k), tree.last(k)));
      const Sums c = converge(roots, 0, tree.middle, tree.groups - 1);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < nt && x * nt + j < work_.n; ++j)
          worst = worse_error(worst, c[static_cast<size_t>(i * nt + j)],
                              operands_.product[static_cast<size_t>(i * work_.n + x * nt + j)]);
    }
    return worst;
  }

  // C as the algorithm computes it: each core's C tile, from the tiles the collectives bring it.
  Tiles compute(Algorithm algorithm) const {
    const Tiles a_tiles = natural_tiles(grid_, operands_.a, work_.m, work_.k, grid_.mt, grid_.kt);
    const Tiles b_tiles = natural_tiles(grid_, operands_.b, work_.k, work_.n, grid_.kt, grid_.nt);
    Tiles c(a_tiles.size(), std::vector<float>(static_cast<size_t>(grid_.mt * grid_.nt), 0.f));
    if (algorithm == Algorithm::Summa) {
      const Holding natural = natural_holding(grid_);
      for (int32_t s = 0; s < grid_.p; ++s)
        multiply_add(grid_, a_tiles,
                     moved(sim::patterns::line_broadcast(grid_.region, a_words_, s, true), grid_, natural), b_tiles,
                     moved(sim::patterns::line_broadcast(grid_.region, b_words_, s, false), grid_, natural), c);
      return c;
    }
    const bool interleaved = algorithm == Algorithm::MeshGemm;
    const Ring ring(grid_.p, interleaved);
    Holding a = skewed(grid_, ring, true), b = skewed(grid_, ring, false);
    const Collective shift_a = sim::patterns::ring_shift(grid_.region, a_words_, true, interleaved);
    const Collective shift_b = sim::patterns::ring_shift(grid_.region, b_words_, false, interleaved);
    for (int32_t s = 0; s < grid_.p; ++s) {
      multiply_add(grid_, a_tiles, a, b_tiles, b, c);
      if (s + 1 < grid_.p) a = moved(shift_a, grid_, a), b = moved(shift_b, grid_, b);
    }
    return c;
  }

  double error_of(const Tiles& c) const {
    double worst = 0;
    for (int64_t i = 0; i < work_.m; ++i)
      for (int64_t j = 0; j < work_.n; ++j) {
        const auto& tile =
            c[static_cast<size_t>(i / grid_.mt) * static_cast<size_t>(grid_.p) + static_cast<size_t>(j / grid_.nt)];
        worst = worse_error(worst, tile[static_cast<size_t>((i % grid_.mt) * grid_.nt + j % grid_.nt)],
                            operands_.product[static_cast<size_t>(i * work_.n + j)]);
      }
    return worst;
  }

  const arch::ArchSpec& arch_;
  const GemmWork& work_;
  sim::MeshFabric fabric_;
  Grid grid_;
  double rate_ = 0, eb_ = 0, acc_bytes_ = 4, step_compute_ = 0, step_issue_ = 0;
  int64_t a_words_ = 0, b_words_ = 0;
  GemmOperands operands_;
  bool values_ = false;
};

}  // namespace

GemmOutcome simulate_mesh_gemm(const arch::ArchSpec& arch, const GemmWork& work) { return GemmModel(arch, work).run(); }

}  // namespace tessera::target
