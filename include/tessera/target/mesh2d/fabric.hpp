// Timing of communication on a 2D mesh fabric (the `mesh2d` arch), at two levels of detail:
//
//  - fast_cost(): the analytical model the simulator uses at wafer scale. Link loads come from
//    walking every flow's route once; the time of a collective is
//        T = max over flows of (first-wavelet latency) + (busiest port's wavelets / rate) - 1
//    where a flow's first-wavelet latency is 2 * ramp + hops * hop_latency after it is ready, and
//    a flow that relays another (a reduction chain) is ready one cycle (the add) after the
//    upstream wavelet reached its core. This is the shape of Luczynski et al.'s wafer model
//    (HPDC'24): max(contention, volume) + ramp and hop latency times dependent depth.
//  - cycle_level_cost(): a per-wavelet, per-link, per-cycle simulation of the same flows, the
//    yardstick the fast model is tested against on meshes up to ~32 x 32.
//
// Routes are static and dimension-ordered (X first, then Y), as colour routes are on the wafer;
// a flow with several destinations is a multicast tree that crosses each link once. A wavelet is
// 32 bits; a link moves bytes_per_cycle / 4 wavelets per cycle in each direction, and so does
// each core's ramp (injection and ejection).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tessera/arch/arch_spec.hpp"

namespace tessera::sim {

struct Coord {
  int32_t x = 0, y = 0;
  bool operator==(const Coord&) const = default;
};

struct Flow {
  Coord src;
  std::vector<Coord> dsts;
  int64_t words = 0;          // 32-bit wavelets
  std::vector<int32_t> deps;  // flows this one relays: its wavelet i waits for their wavelet i at src
};

// A set of flows that form one communication phase (a shift, a broadcast, a reduction...).
struct Collective {
  std::vector<Flow> flows;
};

struct CommCost {
  double cycles = 0;
  int64_t busiest_port_words = 0;      // the most wavelets through one link or ramp
  Coord busiest_port;                  // the router (or core, for "inject") where that port is
  const char* busiest_port_name = "";  // east, west, north, south (links), eject or inject (ramps)
  int64_t word_hops = 0;               // sum over flows of wavelets x links crossed (energy)
  int64_t longest_route_hops = 0;
  int64_t active_links = 0;
  int64_t depth = 0;  // longest chain of dependent flows
};

// A collective that streams its outputs as the cores produce them (a product's partial sums
// reduced while the next are computed): the busiest port's traffic runs alongside `compute`
// cycles of arithmetic; the latency does not. The latency is the same collective's for one word
// (`one_word`: hops, ramps, tree levels), which no bandwidth shortens. Returns the cycles from the
// arithmetic's start to the collective's end.
double streamed_cycles(double compute, const CommCost& all, const CommCost& one_word, double words_per_cycle);

// The cycle-level mode's largest mesh (256 x 256): a collective's extent when one stage of a larger
// run is timed wavelet by wavelet; whole runs at the cycle tier are for meshes up to 64 x 64.
constexpr int64_t kMaxCycleLevelRouters = 65536;

class MeshFabric {
 public:
  MeshFabric(int32_t width, int32_t height, const arch::LinkSpec& link);

  CommCost fast_cost(const Collective& collective) const;
  // Throws Error if the mesh has more than kMaxCycleLevelRouters or the link rate is not a whole
  // number of wavelets per cycle.
  CommCost cycle_level_cost(const Collective& collective) const;

  // Wavelets each mesh link carries in this collective: (router x, router y, direction 0..3 =
  // east, west, north, south, words), links with traffic only.
  struct LinkLoad {
    int32_t x, y;
    uint8_t direction;
    int64_t words;
  };
  std::vector<LinkLoad> link_loads(const Collective& collective) const;

  int32_t width() const { return width_; }
  int32_t height() const { return height_; }

 private:
  int32_t width_, height_;
  arch::LinkSpec link_;
};

// Communication patterns on a rectangle of cores (x0, y0, w, h), as the mesh compiler emits them.
namespace patterns {
// The position that position p of a line of n cores sends to in a cyclic shift: interleaved,
// WaferLLM's ring 0 -> 2 -> 4 -> ... -> (end) -> ... -> 3 -> 1 -> 0 in which every step is at most
// two hops; otherwise the torus order p -> p + 1, whose wrap-around from n - 1 to 0 crosses the line.
int32_t ring_next(int32_t p, int32_t n, bool interleaved = true);
// Cyclic shift of `words` per core along rows (or columns), each core sending to ring_next.
Collective ring_shift(const arch::Region& r, int64_t words, bool along_x, bool interleaved = true);
// One MeshGEMM step: A tiles shift along rows while B tiles shift along columns (interleaved
// false: one Cannon step, in torus order).
Collective gemm_shift(const arch::Region& r, int64_t a_words, int64_t b_words, bool interleaved = true);
// Each row's column `root` multicasts `words` to the whole row (a SUMMA panel broadcast); with
// along_x false, each column's row `root` to the whole column.
Collective line_broadcast(const arch::Region& r, int64_t words, int32_t root, bool along_x);
inline Collective row_broadcast(const arch::Region& r, int64_t words, int32_t root) {
  return line_broadcast(r, words, root, true);
}
// Where a two-level tree allreduce of a line of n cores in groups of `group` puts its roots, as
// WaferLLM's MeshGEMV does (MeshInfra/WaferLLM, MeshGEMV/WSE-3: comm_pe.csl `two_tree_allreduce_y`
// and run_device.sh): each group's root is its core group / 2 (its middle), and the line's root is
// the root of group groups / 2.
struct KTreeShape {
  int64_t n, group, groups, middle;
  KTreeShape(int64_t n_, int64_t group_)
      : n(n_), group(group_), groups((n_ + group_ - 1) / group_), middle(groups / 2) {}
  int64_t first(int64_t k) const { return k * group; }
  int64_t last(int64_t k) const { return std::min(n, (k + 1) * group) - 1; }
  int64_t root(int64_t k) const { return first(k) + (last(k) - first(k) + 1) / 2; }
  // The longer of group k's two chains into its root, in flows.
  int64_t longest_half(int64_t k) const { return std::max(root(k) - first(k), last(k) - root(k)); }
};
// Two-level tree allreduce along rows (or columns) (WaferLLM's K-tree with K = 2): in each group
// of `group` cores two pipelined chains, from its ends, reduce into its middle core; the group
// roots relay from both ends of the line into the middle group's root, which multicasts the
// result back to the whole line (both ways).
Collective ktree_allreduce(const arch::Region& r, int64_t words, int32_t group, bool along_x);
}  // namespace patterns

}  // namespace tessera::sim
