#include <gtest/gtest.h>

#include <cmath>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/mesh2d/fabric.hpp"

using namespace tessera;
using namespace tessera::sim;

namespace {

arch::LinkSpec wse_link() {
  return target::load_arch(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/mesh-32x32.yaml").link;
}

double relative_error(double fast, double cycle) { return std::abs(fast - cycle) / cycle; }

}  // namespace

TEST(Fabric, SingleFlowLatencyIsExact) {
  const MeshFabric mesh(8, 8, wse_link());
  Collective c;
  c.flows.push_back({{1, 1}, {{5, 3}}, 100, {}});
  // 6 hops x 1 cycle + 2 ramps x 2 cycles, then 99 more wavelets at one per cycle.
  EXPECT_EQ(mesh.fast_cost(c).cycles, 6 + 4 + 99);
  EXPECT_EQ(mesh.cycle_level_cost(c).cycles, 6 + 4 + 99);
  EXPECT_EQ(mesh.fast_cost(c).word_hops, 600);
}

TEST(Fabric, SharedLinksAndEjectionSerialise) {
  const MeshFabric mesh(8, 1, wse_link());
  Collective c;
  c.flows.push_back({{0, 0}, {{4, 0}}, 200, {}});
  c.flows.push_back({{1, 0}, {{3, 0}}, 200, {}});  // shares links 1->2->3 with the first
  const double fast = mesh.fast_cost(c).cycles, cycle = mesh.cycle_level_cost(c).cycles;
  EXPECT_GE(cycle, 400) << "two 200-wavelet flows through one link need 400 cycles";
  EXPECT_EQ(mesh.fast_cost(c).busiest_port_words, 400);
  EXPECT_LT(relative_error(fast, cycle), 0.05) << fast << " vs " << cycle;
  Collective gather;  // two flows into one core share its ejection ramp
  gather.flows.push_back({{0, 0}, {{3, 0}}, 100, {}});
  gather.flows.push_back({{7, 0}, {{3, 0}}, 100, {}});
  EXPECT_GE(mesh.cycle_level_cost(gather).cycles, 200);
  EXPECT_GE(mesh.fast_cost(gather).cycles, 200);
}

TEST(Fabric, MulticastCrossesEachLinkOnce) {
  const MeshFabric mesh(16, 16, wse_link());
  const auto c = patterns::row_broadcast({0, 0, 16, 16}, 50, 0);
  EXPECT_EQ(mesh.fast_cost(c).word_hops, 16 * 15 * 50);
  EXPECT_EQ(mesh.fast_cost(c).busiest_port_words, 50);
  EXPECT_EQ(mesh.cycle_level_cost(c).cycles, 15 + 4 + 49);
}

TEST(Fabric, InterleavedRingNeedsAtMostTwoHops) {
  for (int n : {2, 3, 8, 9, 32}) {
    const auto c = patterns::ring_shift({0, 0, n, 1}, 10, true);
    ASSERT_EQ(c.flows.size(), static_cast<size_t>(n));
    std::vector<int> received(static_cast<size_t>(n), 0);
    for (const auto& f : c.flows) {
      EXPECT_LE(std::abs(f.dsts[0].x - f.src.x), 2) << n;
      ++received[static_cast<size_t>(f.dsts[0].x)];
    }
    for (int r : received) EXPECT_EQ(r, 1) << "a ring: every core receives exactly once (n = " << n << ")";
    EXPECT_EQ(MeshFabric(n, 1, wse_link()).fast_cost(c).busiest_port_words, 10) << "no link is shared";
  }
}

TEST(Fabric, BadCollectivesAreRejected) {
  const MeshFabric mesh(4, 4, wse_link());
  Collective outside;
  outside.flows.push_back({{0, 0}, {{4, 0}}, 1, {}});
  EXPECT_THROW(mesh.fast_cost(outside), Error);
  Collective bad_relay;
  bad_relay.flows.push_back({{0, 0}, {{1, 0}}, 5, {}});
  bad_relay.flows.push_back({{2, 0}, {{3, 0}}, 5, {0}});  // relays data that never reaches (2, 0)
  EXPECT_THROW(mesh.fast_cost(bad_relay), Error);
  EXPECT_THROW(MeshFabric(257, 256, wse_link()).cycle_level_cost({}), Error);
}

// The fast model must stay within 10% of the cycle-level mode for the collectives the mesh
// compiler emits, at 8x8, 16x16 and 32x32.
class FastVsCycle : public ::testing::TestWithParam<int> {};

TEST_P(FastVsCycle, RingShift) {
  const int n = GetParam();
  const MeshFabric mesh(n, n, wse_link());
  const auto c = patterns::ring_shift({0, 0, n, n}, 256, true);
  const double fast = mesh.fast_cost(c).cycles, cycle = mesh.cycle_level_cost(c).cycles;
  EXPECT_LT(relative_error(fast, cycle), 0.10) << fast << " vs " << cycle;
}

TEST_P(FastVsCycle, MeshGemm) {
  // A whole MeshGEMM: n steps, each shifting 8x8 fp32 tiles of A along rows and of B along
  // columns; the steps are dependent (each needs the previous tiles), so their times add.
  const int n = GetParam();
  const MeshFabric mesh(n, n, wse_link());
  const auto step = patterns::gemm_shift({0, 0, n, n}, 64, 64);
  const double fast = n * mesh.fast_cost(step).cycles, cycle = n * mesh.cycle_level_cost(step).cycles;
  EXPECT_LT(relative_error(fast, cycle), 0.10) << fast << " vs " << cycle;
}

TEST_P(FastVsCycle, GemvReduction) {
  // Decode GEMV: each core's partial output (64 words) is allreduced along its column.
  const int n = GetParam();
  const MeshFabric mesh(n, n, wse_link());
  const auto c = patterns::ktree_allreduce({0, 0, n, n}, 64, std::max(2, static_cast<int>(std::sqrt(n))), false);
  const double fast = mesh.fast_cost(c).cycles, cycle = mesh.cycle_level_cost(c).cycles;
  EXPECT_LT(relative_error(fast, cycle), 0.10) << fast << " vs " << cycle;
}

TEST_P(FastVsCycle, Allreduce) {
  const int n = GetParam();
  const MeshFabric mesh(n, n, wse_link());
  const auto c = patterns::ktree_allreduce({0, 0, n, n}, 512, 4, true);
  const double fast = mesh.fast_cost(c).cycles, cycle = mesh.cycle_level_cost(c).cycles;
  EXPECT_LT(relative_error(fast, cycle), 0.10) << fast << " vs " << cycle;
}

INSTANTIATE_TEST_SUITE_P(MeshSizes, FastVsCycle, ::testing::Values(8, 16, 32));
