// A matrix product timed alone (`tessera gemm`): on a mesh's cores (target/mesh2d/mesh_gemm.cpp),
// the values each algorithm's data movement computes, its time against the fabric model's costs
// and its refusals; on a GPU (shared_memory/gemm_tiling.cpp), waves of tiles or HBM traffic; on
// an IPU (exchange/exchange_gemm.cpp), blocks over the tiles in BSP supersteps.
#include <gtest/gtest.h>

#include <cmath>

#include "tessera/target/mesh2d/fabric.hpp"
#include "tessera/target/registry.hpp"
#include "test_util.hpp"

namespace tessera {
namespace {

using testing::error_of;

std::unique_ptr<target::Target> preset(const std::string& name) {
  return target::load_target(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + name + ".yaml");
}

const target::GemmAlgorithmResult& algorithm(const target::GemmOutcome& o, const std::string& name) {
  for (const auto& a : o.algorithms)
    if (a.algorithm == name) return a;
  throw std::runtime_error("no algorithm " + name);
}

TEST(MeshGemm, EveryAlgorithmsDataMovementComputesTheProduct) {
  // Dimensions that do not divide the 7 x 7 grid: padded tiles, idle rows of cores.
  const auto mesh = preset("mesh-32x32");
  for (const char* dtype : {"fp32", "fp16"}) {
    const target::GemmWork work{.m = 37, .k = 50, .n = 29, .dtype = dtype, .cores = 7, .values = true, .seed = 3};
    const auto o = mesh->simulate_gemm(work);
    ASSERT_EQ(o.algorithms.size(), 4u);
    EXPECT_GT(o.max_abs_product, 1.0);
    for (const auto& a : o.algorithms) {
      SCOPED_TRACE(a.algorithm + " " + dtype);
      EXPECT_TRUE(a.does_not_fit.empty());
      EXPECT_EQ(a.steps, a.algorithm == "meshgemv" ? 1 : 7);  // MeshGEMV: one product, one reduction
      // fp32 sums of 50 products of values below 1: a few ulps of the largest |C|, where a tile
      // taken from the wrong core would be off by the size of C itself.
      EXPECT_GE(a.max_abs_error, 0);
      EXPECT_LT(a.max_abs_error, 1e-5 * o.max_abs_product);
    }
  }
  // A grid of one core is the host's product.
  const auto one = mesh->simulate_gemm({.m = 5, .k = 6, .n = 7, .dtype = "fp32", .cores = 1});
  for (const auto& a : one.algorithms) EXPECT_LT(a.max_abs_error, 1e-5);
}

TEST(MeshGemm, TimeIsTheStepsArithmeticAndWhatTheFabricDoesNotHide) {
  const auto mesh = preset("mesh-32x32");
  const arch::ArchSpec& arch = mesh->arch();
  // Large tiles: every shift hides behind the arithmetic, so the shifting algorithms take exactly
  // P steps of ceil(mt kt nt / MACs per cycle + kt mt instructions x their overhead) cycles.
  ASSERT_GT(arch.core.vector_op_cycles, 0);
  {
    const auto o = mesh->simulate_gemm({.m = 512, .k = 512, .n = 512, .dtype = "fp16", .cores = 16, .values = false});
    const double step =
        std::ceil(32.0 * 32 * 32 / arch.core.macs_per_cycle.at("fp16") + 32.0 * 32 * arch.core.vector_op_cycles);
    for (const char* name : {"cannon", "meshgemm"}) {
      const auto& a = algorithm(o, name);
      EXPECT_DOUBLE_EQ(a.seconds, 16 * step / arch.clock_hz) << name;
      EXPECT_DOUBLE_EQ(a.issue_s, 16 * 32.0 * 32 * arch.core.vector_op_cycles / arch.clock_hz) << name;
      EXPECT_EQ(a.bound, "compute");
    }
    EXPECT_GT(algorithm(o, "summa").seconds, algorithm(o, "cannon").seconds);  // the first panel is never hidden
    // Energy by the arch's table: every core's 16 steps of 32^3 multiply-adds, the fabric's word-hops.
    // (MeshGEMV would keep all 512 rows of A's segment on every core: it does not fit.)
    EXPECT_NE(algorithm(o, "meshgemv").does_not_fit.find("tiled algorithm"), std::string::npos);
    for (const auto& a : o.algorithms) {
      if (!a.does_not_fit.empty()) continue;
      EXPECT_DOUBLE_EQ(a.energy.compute_j, 256.0 * 16 * 32 * 32 * 32 * arch.energy.mac_pj.at("fp16") * 1e-12);
      EXPECT_DOUBLE_EQ(a.energy.communication_j, a.word_hops * 4 * arch.energy.fabric_pj_per_byte_hop * 1e-12);
      EXPECT_GT(a.energy.memory_j, 0);
    }
    // Each MeshGEMM shift moves every tile two hops where SUMMA's trees cross a link per receiver.
    EXPECT_GT(algorithm(o, "meshgemm").word_hops, algorithm(o, "summa").word_hops);
    EXPECT_NEAR(o.peak_macs_per_s, 256 * arch.core.macs_per_cycle.at("fp16") * arch.clock_hz, 1);
  }
  // One element per tile on the whole 32 x 32 mesh: a step is one instruction. Cannon's
  // wrap-around crosses the grid each step, so the fabric bounds it; MeshGEMM's rings never take
  // more than 2 hops, which hide behind the instruction.
  const target::GemmWork tiny{.m = 32, .k = 32, .n = 32, .dtype = "fp32", .cores = 32, .values = false};
  const auto o = mesh->simulate_gemm(tiny);
  const auto &cannon = algorithm(o, "cannon"), &meshgemm = algorithm(o, "meshgemm"), &summa = algorithm(o, "summa");
  EXPECT_EQ(cannon.bound, "fabric");
  EXPECT_EQ(meshgemm.bound, "compute");
  EXPECT_LT(meshgemm.seconds, cannon.seconds);
  EXPECT_LT(meshgemm.seconds, summa.seconds);
  // MeshGEMV's one reduction of 32 rows beats any 32 steps of shifts or broadcasts.
  EXPECT_EQ(o.algorithms[static_cast<size_t>(o.chosen)].algorithm, "meshgemv");
  // SUMMA's steps as the fabric times each root's broadcasts (the model times two roots and
  // interpolates the rest in the farthest core's distance): the same total.
  const sim::MeshFabric fabric(static_cast<int32_t>(arch.grid_width), static_cast<int32_t>(arch.grid_height),
                               arch.link);
  const arch::Region grid{arch.usable.x, arch.usable.y, 32, 32};
  const double step = 1 + arch.core.vector_op_cycles;  // one MAC, in one instruction
  double cycles = step;                                // the last step's arithmetic
  for (int32_t s = 0; s < 32; ++s) {
    auto c = sim::patterns::line_broadcast(grid, 1, s, true);
    const auto column = sim::patterns::line_broadcast(grid, 1, s, false);
    c.flows.insert(c.flows.end(), column.flows.begin(), column.flows.end());
    cycles += std::max(fabric.fast_cost(c).cycles, s > 0 ? step : 0.0);
  }
  EXPECT_NEAR(summa.seconds * arch.clock_hz, cycles, 1e-6 * cycles);
  // The cycle tier times the same flows wavelet by wavelet and agrees within 5% here.
  target::GemmWork cycle = tiny;
  cycle.fidelity = target::Fidelity::Cycle;
  const auto c = mesh->simulate_gemm(cycle);
  for (size_t i = 0; i < o.algorithms.size(); ++i)
    EXPECT_NEAR(c.algorithms[i].seconds, o.algorithms[i].seconds, 0.05 * o.algorithms[i].seconds)
        << o.algorithms[i].algorithm;
}

TEST(MeshGemm, ProductsTooLargeForTheCoresSayWhatWouldHoldThem) {
  const auto wafer = preset("wse2");
  // 44 x 44 fp32 tiles, as in Miyajima et al.'s largest run (33,000^2 on 750 x 750 cores): four of
  // A and B and one of C, 37.8 KiB of the 40 KiB usable; SUMMA keeps one receive buffer each.
  const auto fits =
      wafer->simulate_gemm({.m = 4400, .k = 4400, .n = 4400, .dtype = "fp32", .cores = 100, .values = false});
  for (const auto& a : fits.algorithms) {
    if (a.algorithm == "meshgemv") continue;  // every row of A on each core: below
    EXPECT_TRUE(a.does_not_fit.empty()) << a.algorithm;
    EXPECT_DOUBLE_EQ(a.memory_bytes, 5 * 44 * 44 * 4.0);
  }
  EXPECT_NE(algorithm(fits, "summa").description.find("one receive buffer"), std::string::npos);
  // On 80 x 80 cores the 55 x 55 tiles need 59.1 KiB: nothing fits, and 98 x 98 (45 x 45 tiles) would.
  const auto o = wafer->simulate_gemm({.m = 4400, .k = 4400, .n = 4400, .dtype = "fp32", .cores = 80, .values = false});
  EXPECT_EQ(o.chosen, -1);
  EXPECT_NE(algorithm(o, "meshgemm").does_not_fit.find("needs 59.1 KiB per core"), std::string::npos);
  EXPECT_NE(algorithm(o, "meshgemm").does_not_fit.find("--cores 98"), std::string::npos);
}

// MeshGEMV: every core multiplies its row's segment of A by its B tile (one product: no steps of
// shifts), and a two-level K-tree allreduce sums the partial products down each column while they
// are computed, as a decode plan's projection step is timed (mesh_timing.cpp: a streamed step).
TEST(MeshGemm, MeshGemvSumsPartialProductsDownEachColumnAsTheyAreComputed) {
  const auto mesh = preset("mesh-32x32");
  const arch::ArchSpec& arch = mesh->arch();
  const target::GemmWork work{
      .m = 3, .k = 1000, .n = 700, .dtype = "fp16", .algorithm = "meshgemv", .cores = 32, .values = true, .seed = 5};
  const auto o = mesh->simulate_gemm(work);
  ASSERT_EQ(o.algorithms.size(), 1u);
  const auto& gemv = o.algorithms.front();
  ASSERT_TRUE(gemv.does_not_fit.empty()) << gemv.does_not_fit;
  // fp32 sums of 1,000 products: a few ulps of the largest |C|; a partial sum left out or taken
  // from the wrong column would be off by the size of C itself.
  EXPECT_GE(gemv.max_abs_error, 0);
  EXPECT_LT(gemv.max_abs_error, 1e-5 * o.max_abs_product);
  // 32-element K segments and 22-column tiles: 3 x 32 x 22 multiply-adds per core in 3 x 32
  // instructions (one per row of A's segment and K, along the tile's 22 columns), and 3 x 22 words
  // reduced down each column in groups of ceil(sqrt(32)) = 6.
  const sim::MeshFabric fabric(static_cast<int32_t>(arch.grid_width), static_cast<int32_t>(arch.grid_height),
                               arch.link);
  const arch::Region column{0, 0, 1, 32};
  const double compute =
      std::ceil(3.0 * 32 * 22 / arch.core.macs_per_cycle.at("fp16") + 3.0 * 32 * arch.core.vector_op_cycles);
  const double cycles = sim::streamed_cycles(
      compute, fabric.fast_cost(sim::patterns::ktree_allreduce(column, 66, 6, false)),
      fabric.fast_cost(sim::patterns::ktree_allreduce(column, 1, 6, false)), arch.link.bytes_per_cycle / 4);
  EXPECT_NEAR(gemv.seconds * arch.clock_hz, cycles, 1e-9 * cycles);
  EXPECT_DOUBLE_EQ(gemv.compute_s, compute / arch.clock_hz);
  // The same vector product with the tiled algorithms pays 32 steps of shifts or broadcasts.
  target::GemmWork all = work;
  all.algorithm = "", all.values = false;
  const auto every = mesh->simulate_gemm(all);
  EXPECT_EQ(every.algorithms[static_cast<size_t>(every.chosen)].algorithm, "meshgemv");
  for (const auto& a : every.algorithms) {
    if (a.algorithm == "meshgemv") continue;
    EXPECT_GT(a.seconds, 2 * gemv.seconds) << a.algorithm;
  }
}

TEST(MeshGemm, BadRequestsAreRefusedByName) {
  const auto wafer = preset("wse2");
  EXPECT_NE(error_of([&] { wafer->simulate_gemm({.m = 8, .k = 8, .n = 8, .dtype = "bf16"}); }).find("no bf16 MACs"),
            std::string::npos);
  EXPECT_NE(error_of([&] { wafer->simulate_gemm({.m = 8, .k = 8, .n = 8, .cores = 800}); }).find("at most 750 x 750"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              wafer->simulate_gemm({.m = 8, .k = 8, .n = 8, .algorithm = "strassen"});
            }).find("no GEMM algorithm 'strassen'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { wafer->simulate_gemm({.m = 0, .k = 8, .n = 8}); }).find("must be 1 to 2^31"),
            std::string::npos);
  EXPECT_NE(error_of([&] { wafer->simulate_gemm({.m = int64_t{1} << 32, .k = 8, .n = 8}); }).find("1 to 2^31"),
            std::string::npos);
  // Values whose data plane would be too much work for this host are skipped, and the outcome says so.
  const auto large = preset("mesh-32x32")->simulate_gemm({.m = 2048, .k = 1024, .n = 1024});
  EXPECT_NE(large.values_note.find("values not computed: on 32 x 32 cores the data plane moves 3.28e+04 tiles and "
                                   "multiplies 2.15e+09 padded elements"),
            std::string::npos)
      << large.values_note;
  for (const auto& a : large.algorithms) EXPECT_EQ(a.max_abs_error, -1);
  EXPECT_NE(error_of([&] {
              wafer->simulate_gemm({.m = 8, .k = 8, .n = 8, .fidelity = target::Fidelity::Analytic});
            }).find("flow tier"),
            std::string::npos);
}

TEST(GpuGemm, AProductAloneIsItsTilesWavesOrItsHbmTrafficAfterALaunch) {
  const auto gpu = preset("a100");
  const arch::ArchSpec& a = gpu->arch();
  // A GEMV: one row of A against 4096 x 4096 of B is the HBM traffic of A, B and C.
  const auto gemv = gpu->simulate_gemm({.m = 1, .k = 4096, .n = 4096, .dtype = "fp16"});
  ASSERT_EQ(gemv.chosen, 0);
  const auto& v = gemv.algorithms[0];
  const double bytes = (4096.0 + 4096.0 * 4096 + 4096) * 2;
  EXPECT_DOUBLE_EQ(v.seconds, a.gpu.kernel_launch_s + bytes / a.gpu.sustained_hbm_bytes_per_second());
  EXPECT_EQ(v.bound, "memory");
  EXPECT_DOUBLE_EQ(v.energy.memory_j, bytes * a.energy.hbm_pj_per_byte * 1e-12);
  EXPECT_NE(gemv.values_note.find("vendor library"), std::string::npos);
  // A prefill-sized product is compute-bound, at most the measured best-shape share of the peak
  // and no less than 90% of it (19 waves of 64 x 128 tiles over 108 SMs).
  const auto big = gpu->simulate_gemm({.m = 4096, .k = 14336, .n = 4096, .dtype = "fp16", .cores = 8});
  const auto& g = big.algorithms[0];
  const double share = 4096.0 * 14336 * 4096 / g.seconds / big.peak_macs_per_s;
  EXPECT_EQ(g.bound, "compute");
  EXPECT_LE(share, a.gpu.matmul_efficiency);
  EXPECT_GT(share, 0.9 * a.gpu.matmul_efficiency);
  EXPECT_NE(error_of([&] {
              gpu->simulate_gemm({.m = 8, .k = 8, .n = 8, .algorithm = "meshgemm"});
            }).find("it runs one, 'tiled'"),
            std::string::npos);
}

TEST(IpuGemm, AProductIsSplitOverTheTilesInPassesThatFitTheirSram) {
  const auto ipu = preset("gc200");
  const arch::ArchSpec& a = ipu->arch();
  // Values: every tile's block product, the K parts added in order, against the host's product.
  const auto small = ipu->simulate_gemm({.m = 37, .k = 50, .n = 29, .dtype = "fp32", .seed = 5});
  ASSERT_EQ(small.chosen, 0);
  EXPECT_GE(small.algorithms[0].max_abs_error, 0);
  EXPECT_LT(small.algorithms[0].max_abs_error, 1e-5 * small.max_abs_product);
  // 4096 x 14336 x 4096 in fp16 (117 + 117 + 34 MB of operands and result over 900 MB of tiles):
  // no split of one pass fits a tile's SRAM, so it runs in passes over N; no faster than the
  // tiles' peak, and mostly arithmetic.
  const auto big = ipu->simulate_gemm({.m = 4096, .k = 14336, .n = 4096, .dtype = "fp16"});
  ASSERT_EQ(big.chosen, 0);
  const auto& g = big.algorithms[0];
  EXPECT_NE(big.layout.find("passes over N"), std::string::npos) << big.layout;
  EXPECT_LE(g.memory_bytes, a.usable_sram_per_core());
  const double share = 4096.0 * 14336 * 4096 / g.seconds / big.peak_macs_per_s;
  EXPECT_GT(share, 0.3);
  EXPECT_LT(share, 1.0);
  EXPECT_EQ(g.bound, "compute");
  EXPECT_NE(big.values_note.find("values not computed"), std::string::npos);
  // Operands larger than the chip's SRAM do not fit, whatever the split.
  const auto huge = ipu->simulate_gemm({.m = 30000, .k = 30000, .n = 30000, .values = false});
  EXPECT_EQ(huge.chosen, -1);
  EXPECT_NE(huge.algorithms[0].does_not_fit.find("the operands do not fit the chip"), std::string::npos);
  EXPECT_NE(error_of([&] {
              ipu->simulate_gemm({.m = 8, .k = 8, .n = 8, .algorithm = "summa"});
            }).find("it runs one, 'planned'"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera
