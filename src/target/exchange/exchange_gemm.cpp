// A matrix product as a kernel of its own on an exchange (IPU-like) chip, planned as Poplar's
// matmul planner does in outline: A, B and C lie spread evenly over the tiles; the product runs
// in one or more serial passes over slices of N (the fewest that fit), each split pm x pk x pn
// over the tiles (pm * pk * pn of them; pm and pk of the form 2^a 3^b, pn as many as the rest of
// the tiles allow): every tile receives its A block (mb x kb) and B block (kb x nb) over the
// exchange, multiplies them into an fp32 partial C block, and where K is split the pk partials of each block are
// reduce-scattered in a second superstep. Each superstep is a BSP step as the inference model times it
// (bsp_timing.cpp): a sync, the busiest tile's exchange at its rate, then its arithmetic (MACs, or its SRAM traffic,
// whichever is longer). Of the splits whose blocks fit a tile's SRAM, the fastest is kept.
// Values: each tile's partial block from the blocks it received, the partials of a C block added
// in tile order, against the host's product.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "../gemm_work.hpp"
#include "exchange_gemm.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/target/exchange/bsp_timing.hpp"

namespace tessera::target {

namespace {

constexpr double kPartialBytes = 4;  // partial sums are fp32

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The split factors tried for M and K: 2^a 3^b up to `limit` (1, 2, 3, 4, 6, 8, 9, 12, ...), so a
// split can use most of a tile count that is not a power of two.
std::vector<int64_t> smooth_numbers(int64_t limit) {
  std::vector<int64_t> out;
  for (int64_t two = 1; two <= limit; two *= 2)
    for (int64_t v = two; v <= limit; v *= 3) out.push_back(v);
  std::sort(out.begin(), out.end());
  return out;
}

struct Split {
  int64_t passes = 1;  // serial passes, each over n / passes columns of B and C
  int64_t pm = 1, pk = 1, pn = 1;
  int64_t mb = 0, kb = 0, nb = 0;  // block sizes
  double memory_bytes = 0;         // per tile
  double sync_s = 0, exchange_s = 0, compute_s = 0, seconds = 0;
  GemmEnergy energy;
  int64_t supersteps = 1;
};

class ExchangeGemm {
 public:
  ExchangeGemm(const arch::ArchSpec& a, const GemmWork& work) : a_(a), work_(work) {
    gemm_mac_rate(a, work);  // the request's checks
    if (!work.algorithm.empty() && work.algorithm != "planned")
      fail("no GEMM algorithm '{}' on {}: it runs one, 'planned' (the product split over its tiles, Poplar-style)",
           work.algorithm, a.name);
    if (work.fidelity != Fidelity::Flow) fail("{} has one timing tier (no mesh fabric to time at another)", a.name);
    eb_ = storage_bits(work.dtype) / 8;
    rates_ = sim::bsp_rates(a, work.dtype);
  }

  GemmOutcome run() const {
    const int64_t tiles = a_.usable.cores();
    std::optional<Split> best, smallest;
    const std::vector<int64_t> factors = smooth_numbers(tiles);
    for (int64_t passes = 1; passes <= work_.n && !best; passes *= 2)
      for (int64_t pm : factors)
        for (int64_t pk : factors) {
          if (pm > work_.m || pk > work_.k || pm * pk > tiles) continue;
          const Split s = plan(passes, pm, pk, std::min(cdiv(work_.n, passes), tiles / (pm * pk)));
          if (!smallest || s.memory_bytes < smallest->memory_bytes) smallest = s;
          if (s.memory_bytes <= a_.usable_sram_per_core() && (!best || s.seconds < best->seconds)) best = s;
        }
    const Split& s = best ? *best : *smallest;
    GemmOutcome out;
    out.layout = fmt::format(
        "{} of {} tiles{}: M split {}, K {}, N {}; each tile multiplies a {} x {} block of A by a {} x {} block of B",
        s.pm * s.pk * s.pn, tiles, s.passes > 1 ? fmt::format(" in {} passes over N", s.passes) : "", s.pm, s.pk, s.pn,
        s.mb, s.kb, s.kb, s.nb);
    out.peak_macs_per_s = static_cast<double>(tiles) * rates_.macs_per_cycle * a_.clock_hz;
    GemmAlgorithmResult r;
    r.algorithm = "planned";
    r.description = "the product split M x K x N over the tiles, blocks exchanged in, K's partials reduce-scattered";
    r.memory_bytes = s.memory_bytes, r.memory_available_bytes = a_.usable_sram_per_core();
    if (!best) {
      r.does_not_fit = fmt::format(
          "needs {:.1f} KiB per tile at best (its share of A, B and C, the blocks it multiplies and their fp32 "
          "partials) of the {:.1f} KiB usable: the operands do not fit the chip; split the product",
          s.memory_bytes / 1024, a_.usable_sram_per_core() / 1024);
      out.algorithms.push_back(r);
      return out;
    }
    r.steps = s.supersteps * s.passes;
    r.compute_s = s.compute_s, r.seconds = s.seconds, r.communication_s = s.seconds - s.compute_s;
    r.bound = s.compute_s >= s.exchange_s + s.sync_s ? "compute" : "exchange";
    r.energy = s.energy;
    if (work_.values) {
      const GemmOperands operands = gemm_operands(work_);
      out.values_note = operands.not_computed;
      out.max_abs_product = operands.max_abs_product;
      if (operands.not_computed.empty()) r.max_abs_error = error_of(s, operands);
    }
    out.algorithms.push_back(r);
    out.chosen = 0;
    return out;
  }

 private:
  Split plan(int64_t passes, int64_t pm, int64_t pk, int64_t pn) const {
    Split s;
    s.passes = passes, s.pm = pm, s.pk = pk, s.pn = pn;
    const int64_t columns = cdiv(work_.n, passes);  // of B and C in one pass
    s.mb = cdiv(work_.m, pm), s.kb = cdiv(work_.k, pk), s.nb = cdiv(columns, pn);
    const auto mb = static_cast<double>(s.mb), kb = static_cast<double>(s.kb), nb = static_cast<double>(s.nb);
    const double tiles = static_cast<double>(a_.usable.cores());
    const double m = static_cast<double>(work_.m), k = static_cast<double>(work_.k), n = static_cast<double>(columns);
    const double slice = std::ceil(nb / static_cast<double>(pk));  // of a C block, after the reduce-scatter
    // The pk - 1 partials of its slice a tile receives in the reduce-scatter (none when K is whole).
    const double reduced = static_cast<double>(pk - 1) * mb * slice;
    const double resident = (m * k + (k + m) * static_cast<double>(work_.n)) * eb_ / tiles;
    s.memory_bytes = resident + (mb * kb + kb * nb) * eb_ + mb * nb * kPartialBytes + reduced * kPartialBytes;
    // Superstep 1: a tile receives its blocks (every tile sends its even share of every copy the
    // blocks need: A is needed by pn tiles, B by pm) and multiplies them, reading both from SRAM.
    const double received = (mb * kb + kb * nb) * eb_;
    const double sent = (m * k * static_cast<double>(pn) + k * n * static_cast<double>(pm)) * eb_ / tiles;
    sim::SuperstepParts pass =
        sim::superstep_parts(a_, rates_, {mb * kb * nb, 0, received, std::max(received, sent)}, true);
    if (pk > 1) {
      // Superstep 2: each of the pk tiles sharing a C block keeps 1/pk of it and receives the
      // other pk - 1 partials of that slice, then adds them.
      const sim::SuperstepParts reduce =
          sim::superstep_parts(a_, rates_, {0, reduced, 0, reduced * kPartialBytes}, true);
      s.supersteps = 2;
      pass.sync_s += reduce.sync_s, pass.exchange_s += reduce.exchange_s, pass.compute_s += reduce.compute_s;
    }
    const auto p = static_cast<double>(passes);
    s.sync_s = p * pass.sync_s, s.exchange_s = p * pass.exchange_s, s.compute_s = p * pass.compute_s;
    // Energy: every used tile's multiply-adds and SRAM reads (as timed) and what it exchanges, per pass.
    const auto& e = a_.energy;
    const double used = static_cast<double>(pm * pk * pn) * p;
    s.energy.compute_j = used * mb * kb * nb * e.mac_pj.at(work_.dtype) * 1e-12;
    s.energy.memory_j = used * received * e.sram_read_pj_per_byte * 1e-12;
    s.energy.communication_j = used * (received + reduced * kPartialBytes) * e.exchange_pj_per_byte * 1e-12;
    s.seconds = s.sync_s + s.exchange_s + s.compute_s;
    return s;
  }

  // C as the tiles compute it: in each pass, tile (i, l, j) multiplies A block (i, l) by B block
  // (l, j) in fp32; the K parts of each C block are added in order.
  double error_of(const Split& s, const GemmOperands& o) const {
    double worst = 0;
    const int64_t columns = cdiv(work_.n, s.passes);
    std::vector<float> block(static_cast<size_t>(s.mb * s.nb)), sum(block.size());
    for (int64_t pass = 0; pass < s.passes; ++pass)
      for (int64_t i = 0; i < s.pm; ++i)
        for (int64_t j = 0; j < s.pn; ++j) {
          const int64_t r0 = i * s.mb, r1 = std::min(work_.m, r0 + s.mb);
          const int64_t c0 = pass * columns + j * s.nb, c1 = std::min({work_.n, (pass + 1) * columns, c0 + s.nb});
          std::fill(sum.begin(), sum.end(), 0.f);
          for (int64_t l = 0; l < s.pk; ++l) {
            std::fill(block.begin(), block.end(), 0.f);
            for (int64_t r = r0; r < r1; ++r)
              for (int64_t q = l * s.kb; q < std::min(work_.k, (l + 1) * s.kb); ++q) {
                const float x = o.a[static_cast<size_t>(r * work_.k + q)];
                for (int64_t c = c0; c < c1; ++c)
                  block[static_cast<size_t>((r - r0) * s.nb + c - c0)] += x * o.b[static_cast<size_t>(q * work_.n + c)];
              }
            for (size_t e = 0; e < sum.size(); ++e) sum[e] += block[e];
          }
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = c0; c < c1; ++c)
              worst = worse_error(worst, sum[static_cast<size_t>((r - r0) * s.nb + c - c0)],
                                  o.product[static_cast<size_t>(r * work_.n + c)]);
        }
    return worst;
  }

  const arch::ArchSpec& a_;
  const GemmWork& work_;
  sim::BspRates rates_;
  double eb_ = 2;
};

}  // namespace

GemmOutcome simulate_exchange_gemm(const arch::ArchSpec& a, const GemmWork& work) {
  return ExchangeGemm(a, work).run();
}

}  // namespace tessera::target
