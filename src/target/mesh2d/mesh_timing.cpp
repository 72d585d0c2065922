#include "tessera/target/mesh2d/mesh_timing.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <string_view>

#include <fmt/core.h>

#include "tessera/base/error.hpp"
#include "tessera/base/memo.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::sim {

namespace {

using program::Pattern;

struct StepCost {
  double compute = 0, comm = 0, host = 0;  // comm: what is not hidden behind compute
  double issue = 0;                        // of compute: the vector instructions' overhead
  Energy energy;
  CommCost fabric;
};

// A stage transfer's row j: it leaves the source region at (src_x, r.y + j) and enters the next
// stage at (entry_x, row), whose entry core relays it along that row. Side by side, rows cross the
// shared edge in parallel; one above the other, row j crosses in its own column so the segments do
// not share links.
struct TransferRow {
  int64_t src_x, entry_x, row;
};
TransferRow transfer_row(const arch::Region& r, const arch::Region& to, int64_t j) {
  const int64_t overlap_x0 = std::max(r.x, to.x), overlap_x1 = std::min(r.x + r.width, to.x + to.width);
  const bool east = to.x >= r.x + r.width;
  TransferRow t{east ? r.x + r.width - 1 : r.x, east ? to.x : to.x + to.width - 1, to.y + j * to.height / r.height};
  if (overlap_x1 > overlap_x0) t.src_x = t.entry_x = overlap_x0 + j % (overlap_x1 - overlap_x0);
  return t;
}

// The spans of a line an allreduce step reduces independently (program::Step::segments): the
// whole line of `n` cores when it names none.
std::vector<std::array<int32_t, 2>> line_segments(const program::Step& s, int64_t n) {
  if (!s.segments.empty()) return s.segments;
  return {{0, static_cast<int32_t>(n - 1)}};
}

class Timer {
  // A collective's shape: pattern; for a transfer the destination's offset and size, for host I/O
  // the stage; the region's size, words, group, segments (program::segments_signature).
  // The last element is the tier it was costed at.
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int32_t, int64_t, int>;

 public:
  Timer(const program::Program& plan, FabricModel model, bool track_links,
        const std::map<std::string, double>& activation_density)
      : model_(model),
        track_links_(track_links && model != FabricModel::Analytic),  // the analytic tier routes nothing
        plan_(plan),
        arch_(target::parse_arch(plan.arch_yaml, plan.arch_origin)),
        fabric_(static_cast<int32_t>(arch_.grid_width), static_cast<int32_t>(arch_.grid_height), arch_.link) {
    if (model == FabricModel::CycleLevel && (arch_.grid_width > 64 || arch_.grid_height > 64))
      fail(
          "the cycle tier times whole runs on meshes up to 64 x 64 (this one is {} x {}); time one stage wavelet by "
          "wavelet inside a flow-tier run with --cycle-region STAGE",
          arch_.grid_width, arch_.grid_height);
    if (const Status s = arch::check_precision(arch_, plan.precision); !s)
      fail("{}: the plan's precision does not match its arch: {}", plan.arch_origin, s.message());
    rate_ = arch_.core.macs_per_cycle.at(plan.precision.activations);
    mac_pj_ = arch_.energy.mac_pj.at(plan.precision.activations);
    if (plan.skip_zero_activations && arch_.sparsity.activations) activation_density_ = activation_density;
  }

  const arch::ArchSpec& arch() const { return arch_; }

  // Costs the collectives of these stages (inside their regions and to the next stage) wavelet by
  // wavelet, the rest at the timer's tier, and totals both tiers' times for them.
  void time_wavelet_by_wavelet(std::set<int32_t> stages) { cycle_stages_ = std::move(stages); }
  const CycleRegionReport& cycle_region() const { return region_; }

  // `scale` < 1 charges a partial prefill chunk proportionally.
  StepCost cost(const program::Step& s, int64_t slots, double scale) {
    StepCost c;
    const double density = s.op == "matmul" ? input_density(s.name) : 1.0;
    const auto macs = static_cast<double>(s.macs + slots * s.macs_per_slot) * scale * density;
    const auto ops = static_cast<double>(s.elementwise + slots * s.elementwise_per_slot) * scale;
    const auto vector_ops = static_cast<double>(s.vector_ops + slots * s.vector_ops_per_slot) * scale;
    c.issue = vector_ops * arch_.core.vector_op_cycles;
    c.compute = std::ceil((macs + ops) / rate_ + c.issue);
    const auto words = static_cast<int64_t>(std::ceil(static_cast<double>(s.words + slots * s.words_per_slot) * scale));
    if (moves_words(s)) {
      const FabricModel tier = tier_of(s);
      c.fabric = communication(s, words, tier);
      if (tier != model_) {
        region_.cycle_level_cycles += c.fabric.cycles;
        region_.reference_cycles += communication(s, words, model_).cycles;
        ++region_.collectives;
      }
      if (s.pattern == Pattern::AllreduceX || s.pattern == Pattern::AllreduceY) {  // costed at the origin
        const arch::Region& r = plan_.stages.at(static_cast<size_t>(s.stage)).region;
        c.fabric.busiest_port.x += static_cast<int32_t>(r.x);
        c.fabric.busiest_port.y += static_cast<int32_t>(r.y);
      }
    }
    c.comm = c.fabric.cycles;
    if (s.overlap && c.comm > 0)
      c.comm = streamed_cycles(c.compute, c.fabric, communication(s, 1, tier_of(s)), arch_.link.bytes_per_cycle / 4) -
               c.compute;
    if (s.host_bytes > 0) {
      const double host_bytes = static_cast<double>(s.host_bytes) * scale;
      c.host = std::ceil(host_bytes / arch_.io.host_bytes_per_second * arch_.clock_hz);
      c.energy.offchip_pj = host_bytes * arch_.energy.offchip_pj_per_byte;
    }
    c.energy.compute_pj = static_cast<double>(s.total_macs + slots * s.total_macs_per_slot) * scale * density * mac_pj_;
    c.energy.sram_pj = static_cast<double>(s.sram_bytes + slots * s.sram_bytes_per_slot) * scale * 0.5 *
                       (arch_.energy.sram_read_pj_per_byte + arch_.energy.sram_write_pj_per_byte);
    c.energy.fabric_pj = static_cast<double>(c.fabric.word_hops) * 4 * arch_.energy.fabric_pj_per_byte_hop;
    return c;
  }

 private:
  // A hand-over to a stage on the same cores (layers sharing a region) leaves the residual stream
  // on every core of its row, where the next layer reads it: nothing moves.
  bool moves_words(const program::Step& s) const {
    if (s.pattern == Pattern::None) return false;
    return s.pattern != Pattern::StageTransfer || plan_.stages.at(static_cast<size_t>(s.stage)).region !=
                                                      plan_.stages.at(static_cast<size_t>(s.to_stage)).region;
  }

  double input_density(const std::string& step) const {
    for (const auto& [layer, density] : activation_density_)
      if (step.ends_with(layer)) return density;
    return 1.0;
  }

  // Host I/O stays at the timer's tier: its flows cross the wafer from its edge.
  FabricModel tier_of(const program::Step& s) const {
    const bool host = s.pattern == Pattern::HostIn || s.pattern == Pattern::HostOut;
    return !host && cycle_stages_.contains(s.stage) ? FabricModel::CycleLevel : model_;
  }

  // The flow or cycle tier's cost of a collective; the cycle tier on a mesh just large enough for
  // its flows (dimension-ordered routes stay within their ends' bounding box).
  CommCost routed_cost(const Collective& c, FabricModel tier) const {
    if (tier != FabricModel::CycleLevel) return fabric_.fast_cost(c);
    int32_t width = 1, height = 1;
    for (const Flow& f : c.flows) {
      width = std::max(width, f.src.x + 1), height = std::max(height, f.src.y + 1);
      for (const Coord& d : f.dsts) width = std::max(width, d.x + 1), height = std::max(height, d.y + 1);
    }
    return MeshFabric(width, height, arch_.link).cycle_level_cost(c);
  }

  CommCost communication(const program::Step& s, int64_t words, FabricModel tier) {
    // Collectives inside a region, and transfers between two regions, are translation-invariant
    // (no other traffic crosses them), so equal shapes share one costing, built with the regions'
    // corner at the origin; host I/O depends on how far the region is from the wafer's edge.
    const arch::Region& at = plan_.stages.at(static_cast<size_t>(s.stage)).region;
    const bool local = s.pattern == Pattern::AllreduceX || s.pattern == Pattern::AllreduceY;
    const bool transfer = s.pattern == Pattern::StageTransfer;
    const arch::Region to_at =
        transfer ? plan_.stages.at(static_cast<size_t>(s.to_stage)).region : arch::Region{at.x, at.y, 0, 0};
    const int64_t ox = local || transfer ? std::min(at.x, to_at.x) : 0,
                  oy = local || transfer ? std::min(at.y, to_at.y) : 0;
    const arch::Region r{at.x - ox, at.y - oy, at.width, at.height};
    const arch::Region to{to_at.x - ox, to_at.y - oy, to_at.width, to_at.height};
    // The analytic tier's closed forms cost less than looking them up.
    if (tier == FabricModel::Analytic) return analytic_cost(s, r, to, words);
    const auto key = std::make_tuple(static_cast<int>(s.pattern),
                                     transfer ? to_at.x - at.x
                                     : local  ? -1
                                              : s.stage,
                                     transfer ? to_at.y - at.y : -1, r.width, r.height, to.width, to.height, words,
                                     s.group, program::segments_signature(s), static_cast<int>(tier));
    if (track_links_ && tier == tier_of(s)) ++executions_[{key, ox, oy}];
    if (const auto it = memo_.find(key); it != memo_.end()) return it->second;
    Collective c;
    switch (s.pattern) {
      case Pattern::None:
        break;
      case Pattern::AllreduceX:
      case Pattern::AllreduceY:
        return line_allreduce(key, r, s, words, tier);
      case Pattern::StageTransfer: {
        // Row j's segment goes to the matching row of the next stage, whose entry core relays it
        // along that row (a multicast).
        for (int64_t j = 0; j < r.height; ++j) {
          const TransferRow t = transfer_row(r, to, j);
          const Coord entry{static_cast<int32_t>(t.entry_x), static_cast<int32_t>(t.row)};
          c.flows.push_back({{static_cast<int32_t>(t.src_x), static_cast<int32_t>(r.y + j)}, {entry}, words, {}});
          Flow along{entry, {}, words, {static_cast<int32_t>(c.flows.size() - 1)}};
          for (int64_t x = to.x; x < to.x + to.width; ++x)
            if (x != t.entry_x) along.dsts.push_back({static_cast<int32_t>(x), entry.y});
          if (!along.dsts.empty()) c.flows.push_back(std::move(along));
        }
        break;
      }
      case Pattern::HostIn:
      case Pattern::HostOut: {
        const auto [channels, share] = host_channels(s, r);
        for (int64_t k = 0; k < channels; ++k) {
          const Coord edge{static_cast<int32_t>(arch_.usable.x), static_cast<int32_t>(r.y + k * r.height / channels)};
          const Coord inside{static_cast<int32_t>(r.x), edge.y};
          if (edge == inside) continue;
          if (s.pattern == Pattern::HostIn)
            c.flows.push_back({edge, {inside}, share, {}});
          else
            c.flows.push_back({inside, {edge}, share, {}});
        }
        break;
      }
    }
    const CommCost cost = routed_cost(c, tier);
    memo_.emplace(key, cost);
    if (track_links_) loads_.emplace(key, fabric_.link_loads(c));
    return cost;
  }

  // Host data enters and leaves through the channels on the west edge, one per 16 rows at most
  // max_channels_used of them; each channel's row carries its share (words) across the fabric.
  std::pair<int64_t, int64_t> host_channels(const program::Step& s, const arch::Region& r) const {
    const int64_t channels = std::max<int64_t>(1, std::min(arch_.io.max_channels_used, r.height));
    return {channels,
            static_cast<int64_t>(std::ceil(static_cast<double>(s.host_bytes) / 4.0 / static_cast<double>(channels)))};
  }

  // The analytic tier's two-level tree allreduce over lines of `n` cores (`lines` of them side
  // by side, each reducing `words`), as patterns::ktree_allreduce builds it; `shared_end`: an end
  // core also serves a neighbouring segment's tree, one more stream through its eject port.
  CommCost tree_allreduce_cost(int64_t n, int64_t lines, int32_t group, int64_t words, bool shared_end) const {
    const double hop = arch_.link.hop_latency_cycles, ramp = arch_.link.ramp_latency_cycles;
    const double rate = arch_.link.bytes_per_cycle / 4.0, stream = static_cast<double>(words) / rate;
    const double relay = 2 * ramp + 1;
    const auto w = static_cast<double>(words);
    CommCost cost;
    if (n < 2) return cost;
    const int64_t g = std::min<int64_t>(std::max<int32_t>(1, group), n);
    const patterns::KTreeShape tree(n, g);
    // A chain of `length` flows into a root: its last flow is ready after `length` relays
    // of one hop (the root's own add included).
    const auto chain = [&](int64_t length) { return static_cast<double>(length) * (relay + hop); };
    const auto into_root = [&](int64_t k) { return chain(tree.longest_half(k)); };
    // When root k's partial sums (its group's and those of the roots beyond it) can leave
    // it, from either end of the line toward the middle group's root.
    std::vector<double> ready(static_cast<size_t>(tree.groups));
    for (int64_t k = 0; k <= tree.middle; ++k)
      ready[static_cast<size_t>(k)] =
          std::max(into_root(k), k > 0 ? ready[static_cast<size_t>(k - 1)] + relay +
                                             static_cast<double>(tree.root(k) - tree.root(k - 1)) * hop
                                       : 0.0);
    double from_below = 0;
    for (int64_t k = tree.groups - 1; k > tree.middle; --k)
      from_below = std::max(
          into_root(k),
          k + 1 < tree.groups ? from_below + relay + static_cast<double>(tree.root(k + 1) - tree.root(k)) * hop : 0.0);
    if (tree.groups - 1 > tree.middle)
      ready[static_cast<size_t>(tree.middle)] =
          std::max(ready[static_cast<size_t>(tree.middle)],
                   from_below + relay + static_cast<double>(tree.root(tree.middle + 1) - tree.root(tree.middle)) * hop);
    const int64_t top = tree.root(tree.middle), reach = std::max(top, n - 1 - top);
    // The busiest port is an eject: the line's root takes both halves of its group and the
    // roots on both sides; another root its two halves, one root and the broadcast; any other
    // core its neighbour's partial sums and the broadcast. The streams overlap, so the last
    // wavelet through it waits for all of them. Links: each group's chains, the roots' relays
    // and the broadcast's tree.
    int64_t through_eject = 1, longest_chain = 0;
    double links = static_cast<double>(n - 1);
    for (int64_t k = 0; k < tree.groups; ++k) {
      const int64_t halves = (tree.root(k) > tree.first(k)) + (tree.root(k) < tree.last(k));
      const int64_t roots = k == tree.middle ? (k > 0) + (k + 1 < tree.groups) : (k != 0 && k != tree.groups - 1);
      through_eject = std::max(through_eject, halves + roots + (k == tree.middle ? 0 : 1));
      if (tree.longest_half(k) >= 2 || shared_end) through_eject = std::max<int64_t>(through_eject, 2);
      longest_chain = std::max(longest_chain, tree.longest_half(k));
      links += static_cast<double>(tree.last(k) - tree.first(k));
      if (k > 0) links += static_cast<double>(tree.root(k) - tree.root(k - 1));
    }
    cost.cycles = ready[static_cast<size_t>(tree.middle)] + 2 * ramp + static_cast<double>(reach) * hop +
                  static_cast<double>(through_eject) * stream - 1;
    cost.busiest_port_words = through_eject * words;
    cost.busiest_port_name = "eject";
    cost.word_hops = static_cast<int64_t>(links * w * static_cast<double>(lines));
    cost.active_links = 2 * (n - 1) * lines;
    cost.longest_route_hops = reach;
    cost.depth = longest_chain + std::max(tree.middle, tree.groups - 1 - tree.middle) + 1;
    return cost;
  }

  // The analytic tier: each pattern's time in closed form from the flows the flow tier would
  // build (collectives.cpp, above), without routing them: the critical path of first wavelets (a
  // dependent flow starts when its input's first wavelet is in, 2 ramps + hops + 1 cycle later, as
  // the flow tier has it) plus the stream of the busiest port. Contention is the one case the
  // patterns have: a tree allreduce's group roots receive their group's chain and the next
  // group's partial sums through one eject port, which costs a second stream when they overlap.
  CommCost analytic_cost(const program::Step& s, const arch::Region& r, const arch::Region& to, int64_t words) const {
    const double hop = arch_.link.hop_latency_cycles, ramp = arch_.link.ramp_latency_cycles;
    const double rate = arch_.link.bytes_per_cycle / 4.0, stream = static_cast<double>(words) / rate;
    const double relay = 2 * ramp + 1;  // a dependent flow's start after its input's first wavelet, but the hops
    CommCost cost;
    const auto w = static_cast<double>(words);
    switch (s.pattern) {
      case Pattern::None:
        break;
      case Pattern::AllreduceX:
      case Pattern::AllreduceY: {
        const bool along_x = s.pattern == Pattern::AllreduceX;
        const int64_t lines = along_x ? r.height : r.width;
        if (words == 0) break;
        // Segments run side by side on disjoint links; one that shares its end core with the next
        // also shares that core's eject port (one more stream through it).
        // The slowest segment sets the time and the busiest port; traffic is every segment's.
        const auto segments = line_segments(s, along_x ? r.width : r.height);
        int64_t word_hops = 0, active_links = 0;
        for (size_t i = 0; i < segments.size(); ++i) {
          const bool shared = (i > 0 && segments[i - 1][1] >= segments[i][0]) ||
                              (i + 1 < segments.size() && segments[i][1] >= segments[i + 1][0]);
          const CommCost one = tree_allreduce_cost(segments[i][1] - segments[i][0] + 1, lines, s.group, words, shared);
          word_hops += one.word_hops, active_links += one.active_links;
          if (one.cycles > cost.cycles) cost = one;
        }
        cost.word_hops = word_hops, cost.active_links = active_links;
        break;
      }
      case Pattern::StageTransfer: {
        // As the flow tier routes it (transfer_row).
        double links = 0;
        for (int64_t j = 0; j < r.height; ++j) {
          const TransferRow t = transfer_row(r, to, j);
          const auto reach = static_cast<double>(std::abs(t.src_x - t.entry_x) + std::abs(r.y + j - t.row));
          const auto along = static_cast<double>(std::max(t.entry_x - to.x, to.x + to.width - 1 - t.entry_x));
          const double first = to.width > 1 ? relay + reach * hop + 2 * ramp + along * hop : 2 * ramp + reach * hop;
          cost.cycles = std::max(cost.cycles, first + stream - 1);
          cost.longest_route_hops = std::max(cost.longest_route_hops, static_cast<int64_t>(reach + along));
          links += reach + static_cast<double>(to.width - 1);
        }
        cost.busiest_port_words = words;
        cost.busiest_port_name = "inject";  // every row's source injects its segment once
        cost.word_hops = static_cast<int64_t>(links * w);
        cost.active_links = static_cast<int64_t>(links);
        cost.depth = to.width > 1 ? 2 : 1;
        break;
      }
      case Pattern::HostIn:
      case Pattern::HostOut: {
        const auto [channels, share] = host_channels(s, r);
        const int64_t reach = r.x - arch_.usable.x;
        if (reach <= 0 || share == 0) break;
        cost.cycles = 2 * ramp + static_cast<double>(reach) * hop + static_cast<double>(share) / rate - 1;
        cost.busiest_port_words = share;
        cost.busiest_port_name = s.pattern == Pattern::HostIn ? "eject" : "inject";
        cost.word_hops = channels * reach * share;
        cost.active_links = channels * reach;
        cost.longest_route_hops = reach;
        cost.depth = 1;
        break;
      }
    }
    return cost;
  }

  // An allreduce along every row (or column) of a region: the lines use disjoint links (routes
  // stay in their line), so one line is costed and the counts are multiplied by the lines; the
  // time, the busiest port and the route lengths are one line's.
  CommCost line_allreduce(const Key& key, const arch::Region& r, const program::Step& s, int64_t words,
                          FabricModel tier) {
    const bool along_x = s.pattern == Pattern::AllreduceX;
    const int64_t lines = along_x ? r.height : r.width;
    // One line's flows: the whole line's tree, or each segment's side by side.
    Collective c;
    for (const auto& [first, last] : line_segments(s, along_x ? r.width : r.height)) {
      const int64_t n = last - first + 1;
      const Collective part =
          patterns::ktree_allreduce({along_x ? first : 0, along_x ? 0 : first, along_x ? n : 1, along_x ? 1 : n}, words,
                                    std::max(1, s.group), along_x);
      const auto base = static_cast<int32_t>(c.flows.size());
      for (Flow f : part.flows) {
        for (int32_t& d : f.deps) d += base;
        c.flows.push_back(std::move(f));
      }
    }
    CommCost cost = routed_cost(c, tier);
    cost.word_hops *= lines, cost.active_links *= lines;
    memo_.emplace(key, cost);
    if (track_links_) {
      std::vector<MeshFabric::LinkLoad> all;
      for (const auto& l : fabric_.link_loads(c))
        for (int64_t line = 0; line < lines; ++line) {
          MeshFabric::LinkLoad moved = l;
          (along_x ? moved.y : moved.x) += static_cast<int32_t>(line);
          all.push_back(moved);
        }
      loads_.emplace(key, std::move(all));
    }
    return cost;
  }

 public:
  // Words per link over the run: each collective's loads (costed once per shape), moved to where
  // it ran and multiplied by how often it ran there.
  std::vector<int64_t> link_words() const {
    std::vector<int64_t> words(static_cast<size_t>(arch_.grid_width * arch_.grid_height * 4), 0);
    for (const auto& [where, count] : executions_) {
      const auto& [key, ox, oy] = where;
      for (const auto& l : loads_.at(key))
        words[static_cast<size_t>(((l.y + oy) * arch_.grid_width + (l.x + ox)) * 4 + l.direction)] += l.words * count;
    }
    return words;
  }

 private:
  FabricModel model_;
  bool track_links_;
  std::map<std::tuple<Key, int64_t, int64_t>, int64_t> executions_;  // (collective, region x, y) -> count
  std::map<Key, std::vector<MeshFabric::LinkLoad>> loads_;
  const program::Program& plan_;
  arch::ArchSpec arch_;
  MeshFabric fabric_;
  double rate_ = 1, mac_pj_ = 0;
  std::map<std::string, double> activation_density_;  // empty unless the arch skips zero activations
  std::map<Key, CommCost> memo_;
  std::set<int32_t> cycle_stages_;
  CycleRegionReport region_;
};

// What passes add to a phase's totals: its step sums, core-time, and per stage compute and energy.
struct PassSums {
  PhaseReport phase;
  double compute_core = 0, comm_core = 0;
  std::vector<double> stage_compute, stage_energy, stage_busy;
  explicit PassSums(size_t stages) : stage_compute(stages, 0.0), stage_energy(stages, 0.0), stage_busy(stages, 0.0) {}
  // Adds `times` passes like `o`.
  void add(const PassSums& o, double times = 1) {
    phase.compute_cycles += times * o.phase.compute_cycles, phase.comm_cycles += times * o.phase.comm_cycles;
    phase.host_cycles += times * o.phase.host_cycles, phase.issue_cycles += times * o.phase.issue_cycles;
    phase.energy += {times * o.phase.energy.compute_pj, times * o.phase.energy.sram_pj,
                     times * o.phase.energy.fabric_pj, times * o.phase.energy.offchip_pj};
    compute_core += times * o.compute_core, comm_core += times * o.comm_core;
    for (size_t i = 0; i < stage_compute.size(); ++i) {
      stage_compute[i] += times * o.stage_compute[i], stage_energy[i] += times * o.stage_energy[i];
      stage_busy[i] += times * o.stage_busy[i];
    }
  }
};

bool per_slot(const program::Step& s) {
  return s.macs_per_slot != 0 || s.elementwise_per_slot != 0 || s.vector_ops_per_slot != 0 || s.words_per_slot != 0 ||
         s.sram_bytes_per_slot != 0 || s.total_macs_per_slot != 0;
}

// A phase's step costs, reused: a step's cost depends on the pass only through its stage's cached
// slots (steps with per-slot terms) and the chunk's scale, and steps of the same shape (every
// layer's attention, when their regions are alike) cost the same, so a class of equal steps costs
// what it cost the last time it met the same slots and scale. Not where costing has side effects
// (`reuse` false: link loads and cycle-level regions total every call).
class CostMemo {
 public:
  CostMemo(const program::Program& plan, const std::vector<program::Step>& steps, Timer& timer, bool reuse,
           bool by_name)
      : plan_(plan), steps_(steps), timer_(timer), reuse_(reuse) {
    // What a step's cost reads: its figures, its region's size (a transfer's: where the next region
    // is; host I/O's: the region's place on the wafer; an allreduce's segments); its name where
    // input densities apply.
    // Numbers first: equal tuples compare their names last.
    using Shape = std::tuple<int, std::array<int64_t, 13>, std::array<int64_t, 9>, int32_t, bool, std::string_view>;
    std::vector<Shape> classes;  // a few dozen: found by linear search, comparing a hash first
    std::vector<size_t> hashes;
    class_.reserve(steps.size());
    for (const program::Step& st : steps) {
      const arch::Region& r = plan.stages.at(static_cast<size_t>(st.stage)).region;
      const bool transfer = st.pattern == program::Pattern::StageTransfer;
      const bool host = st.pattern == program::Pattern::HostIn || st.pattern == program::Pattern::HostOut;
      const arch::Region& to = transfer ? plan.stages.at(static_cast<size_t>(st.to_stage)).region : r;
      const Shape shape{static_cast<int>(st.pattern),
                        {st.macs, st.macs_per_slot, st.elementwise, st.elementwise_per_slot, st.vector_ops,
                         st.vector_ops_per_slot, st.sram_bytes, st.sram_bytes_per_slot, st.total_macs,
                         st.total_macs_per_slot, st.words, st.words_per_slot, st.host_bytes},
                        {host ? r.x : 0, host ? r.y : 0, r.width, r.height, to.x - r.x, to.y - r.y, to.width, to.height,
                         program::segments_signature(st)},
                        st.group,
                        st.overlap,
                        std::string_view(by_name && st.op == "matmul" ? st.name : st.op)};
      size_t hash = std::hash<std::string_view>()(std::get<5>(shape)) ^ static_cast<size_t>(std::get<0>(shape));
      for (const int64_t v : std::get<1>(shape)) hash = hash * 1000003 + static_cast<size_t>(v);
      for (const int64_t v : std::get<2>(shape)) hash = hash * 1000003 + static_cast<size_t>(v);
      size_t known = 0;
      while (known < classes.size() && (hashes[known] != hash || classes[known] != shape)) ++known;
      class_.push_back(known);
      if (known == classes.size()) classes.push_back(shape), hashes.push_back(hash);
    }
    cost_.resize(classes.size());
    key_.assign(classes.size(), {-1, 0.0});
    costed_.assign(classes.size(), 0);
  }

  // Step i's cost with `slots` cached slots per core of its stage, at `scale` of a chunk; valid
  // until the next call.
  const StepCost& get(size_t i, int64_t slots, double scale) {
    const program::Step& s = steps_[i];
    if (!reuse_) return scratch_ = timer_.cost(s, slots, scale);
    const std::pair<int64_t, double> key{per_slot(s) ? slots : 0, scale};
    const size_t c = class_[i];
    if (key_[c] != key) cost_[c] = timer_.cost(s, slots, scale), key_[c] = key, costed_[c] = i;
    return cost_[c];
  }

  // The busiest port of step i's cost, as get(i, ...) last returned it: an allreduce's is where
  // it is on the wafer, so moved from the region of the step costed to step i's.
  Coord busiest_port(size_t i) const {
    const program::Step& s = steps_[i];
    if (!reuse_) return scratch_.fabric.busiest_port;
    const size_t c = class_[i];
    Coord port = cost_[c].fabric.busiest_port;
    if (s.pattern == program::Pattern::AllreduceX || s.pattern == program::Pattern::AllreduceY) {
      const arch::Region &here = region(i), &there = region(costed_[c]);
      port.x += static_cast<int32_t>(here.x - there.x);
      port.y += static_cast<int32_t>(here.y - there.y);
    }
    return port;
  }

 private:
  const arch::Region& region(size_t step) const { return plan_.stages[static_cast<size_t>(steps_[step].stage)].region; }

  const program::Program& plan_;
  const std::vector<program::Step>& steps_;
  Timer& timer_;
  bool reuse_;
  std::vector<size_t> class_;  // per step
  std::vector<StepCost> cost_;
  std::vector<std::pair<int64_t, double>> key_;  // per class: (slots, or 0 without per-slot terms; scale)
  std::vector<size_t> costed_;                   // per class: the step whose costing cost_ holds
  StepCost scratch_;
};

void finish_fractions(PhaseReport& phase, double compute_core_cycles, double comm_core_cycles, int64_t cores) {
  const double total = phase.cycles * static_cast<double>(cores);
  if (total <= 0) return;
  phase.compute_core_fraction = compute_core_cycles / total;
  phase.comm_core_fraction = comm_core_cycles / total;
  phase.idle_core_fraction = std::max(0.0, 1.0 - phase.compute_core_fraction - phase.comm_core_fraction);
}

}  // namespace

std::vector<double> decode_stage_cycles(const program::Program& plan, FabricModel model) {
  Timer timer(plan, model, false, {});
  std::vector<double> cycles(plan.stages.size(), 0.0);
  for (const auto& s : plan.decode) {
    const auto& stage = plan.stages.at(static_cast<size_t>(s.stage));
    const int64_t slots = (plan.max_context + stage.context_split - 1) / stage.context_split;
    const StepCost c = timer.cost(s, slots, 1.0);
    cycles[static_cast<size_t>(s.stage)] += c.compute + c.comm + c.host;
  }
  return cycles;
}

std::vector<double> prefill_stage_cycles(const program::Program& plan, FabricModel model) {
  Timer timer(plan, model, false, {});
  std::vector<double> cycles(plan.stages.size(), 0.0);
  const int64_t chunk = plan.prefill_chunk_tokens;
  for (int64_t done = 0; done < plan.prompt_tokens; done += chunk) {
    const int64_t tokens = std::min(chunk, plan.prompt_tokens - done);
    const bool last = done + tokens == plan.prompt_tokens;
    for (const auto& s : plan.prefill) {
      if (s.last_chunk_only && !last) continue;
      const auto& stage = plan.stages.at(static_cast<size_t>(s.stage));
      const int64_t slots = (done + tokens + stage.context_split - 1) / stage.context_split;
      const StepCost c =
          timer.cost(s, slots, s.last_chunk_only ? 1.0 : static_cast<double>(tokens) / static_cast<double>(chunk));
      cycles[static_cast<size_t>(s.stage)] += c.compute + c.comm + c.host;
    }
  }
  return cycles;
}

MeshReport simulate_mesh_timing(const program::Program& plan, const TimingOptions& options) {
  const bool record_trace = options.record_trace;
  Timer timer(plan, options.fabric, options.link_loads, options.activation_density);
  const arch::ArchSpec& a = timer.arch();
  MeshReport report;
  if (!options.cycle_region.empty()) {
    if (options.fabric == FabricModel::CycleLevel)
      fail("--cycle-region {}: the whole run is already at the cycle tier", options.cycle_region);
    const auto at = std::find_if(plan.stages.begin(), plan.stages.end(),
                                 [&](const program::Stage& st) { return st.name == options.cycle_region; });
    if (at == plan.stages.end()) {
      std::string names;
      for (const auto& st : plan.stages) names += fmt::format("{}'{}'", names.empty() ? "" : ", ", st.name);
      fail("--cycle-region '{}' is not a stage of this plan; its stages are {}", options.cycle_region, names);
    }
    timer.time_wavelet_by_wavelet({static_cast<int32_t>(at - plan.stages.begin())});
  }
  report.arch_name = a.name;
  report.fabric_model = options.fabric == FabricModel::Analytic ? "analytic"
                        : options.fabric == FabricModel::Fast   ? "fast"
                                                                : "cycle-level";
  static TextMemo<ir::ModelConfig> models(16);
  const ir::ModelConfig model = models.get(plan.model_origin, plan.model_yaml,
                                           [&] { return ir::parse_model_config(plan.model_yaml, plan.model_origin); });
  report.model_name = model.name;
  report.routing =
      compiler::routing_report(plan.routing, model.n_experts, model.experts_per_token, 1, plan.prompt_tokens, 1);
  report.precision = plan.precision;
  report.weight_bits = plan.weight_bits;
  report.skip_weight_zeros = plan.skip_weight_zeros;
  report.skip_zero_activations = plan.skip_zero_activations;
  report.activation_density = options.activation_density;
  report.clock_hz = a.clock_hz;
  report.cores_usable = a.usable.cores();
  report.prompt_tokens = plan.prompt_tokens;
  report.generated_tokens = plan.max_new_tokens;
  report.sram_per_core_bytes = a.usable_sram_per_core();
  const std::vector<size_t> owner = program::region_owners(plan);
  const std::vector<int64_t> held = program::region_bytes_per_core(plan);
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const auto& st = plan.stages[i];
    report.stage_names.push_back(st.name);
    report.stage_compute_cycles.push_back(0);
    report.stage_decode_energy_pj.push_back(0);
    if (owner[i] != i) continue;
    report.cores_used += st.region.cores();
    if (held[i] > report.sram_high_water_bytes) {
      report.sram_high_water_bytes = held[i];
      report.sram_high_water_stage = st.name;
    }
  }
  // A pass runs its stages in order, each on its own cores: a stage starts once the stage before
  // it in this pass has finished and its cores have finished the previous pass (`region_end`, in
  // cycles since the run began, kept by the region's first stage: layers sharing a region take
  // turns on it). Prefill chunks therefore flow through the regions as a pipeline (chunk c in
  // layer L while chunk c + 1 is in layer L - 1: its keys and values for layer L are ready when
  // chunk c + 1 gets there); a decode pass starts when the token before it is out. Returns when
  // the pass ends.
  std::vector<double> region_end(plan.stages.size(), 0.0);
  // Costs are reused (CostMemo) except where costing has side effects.
  const bool reuse_costs = !options.link_loads && options.cycle_region.empty();
  CostMemo prefill_costs(plan, plan.prefill, timer, reuse_costs, !options.activation_density.empty()),
      decode_costs(plan, plan.decode, timer, reuse_costs, !options.activation_density.empty());
  // The most loaded port each decode step had in any pass (named once the busiest are known).
  struct PortLoad {
    int64_t words = 0;
    Coord port;
    const char* name = "";
    int64_t word_hops = 0;
  };
  // A step's cost added to a pass's sums (and to the decode hotspots).
  const auto add_step = [&](PassSums& sums, const program::Step& s, size_t i, const StepCost& c,
                            std::vector<PortLoad>* hot) {
    const auto cores = static_cast<double>(plan.stages[static_cast<size_t>(s.stage)].region.cores());
    sums.phase.compute_cycles += c.compute;
    sums.phase.issue_cycles += c.issue;
    sums.phase.comm_cycles += c.comm;
    sums.phase.host_cycles += c.host;
    sums.compute_core += c.compute * cores;
    sums.comm_core += c.comm * cores;
    sums.phase.energy += c.energy;
    sums.stage_compute[static_cast<size_t>(s.stage)] += c.compute;
    sums.stage_energy[static_cast<size_t>(s.stage)] += c.energy.total_pj();
    sums.stage_busy[static_cast<size_t>(s.stage)] += c.compute + c.comm + c.host;
    if (hot && c.fabric.busiest_port_words > (*hot)[i].words)
      (*hot)[i] = {c.fabric.busiest_port_words, decode_costs.busiest_port(i), c.fabric.busiest_port_name,
                   c.fabric.word_hops};
  };
  auto run_pass = [&](const std::vector<program::Step>& steps, int64_t context, double scale, bool last_chunk,
                      PassSums& sums, std::vector<PortLoad>* hot, bool detailed) {
    const bool decode = hot != nullptr;
    PhaseReport& phase = decode ? report.decode : report.prefill;  // its pass count
    double clock = 0, previous_stage_end = 0;
    int32_t running = -1;
    const bool per_step_figures = decode && detailed && phase.passes + 2 == plan.max_new_tokens;
    if (per_step_figures) report.decode_steps.reserve(steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      const program::Step& s = steps[i];
      if (s.last_chunk_only && !last_chunk) continue;
      if (s.stage != running) {
        if (running >= 0) previous_stage_end = region_end[owner[static_cast<size_t>(running)]] = clock;
        running = s.stage;
        clock = std::max(previous_stage_end, region_end[owner[static_cast<size_t>(running)]]);
      }
      const auto& stage = plan.stages.at(static_cast<size_t>(s.stage));
      const int64_t slots = (context + stage.context_split - 1) / stage.context_split;
      const double step_scale = s.last_chunk_only ? 1.0 : scale;
      const StepCost& c = (decode ? decode_costs : prefill_costs).get(i, slots, step_scale);
      add_step(sums, s, i, c, hot);
      if (per_step_figures)
        report.decode_steps.push_back(
            {s.name, true, s.stage, phase.passes, clock, c.compute, c.comm, c.host, program::pattern_name(s.pattern),
             static_cast<int64_t>(s.macs + slots * s.macs_per_slot), s.words + slots * s.words_per_slot,
             c.fabric.busiest_port_words, c.fabric.word_hops, s.host_bytes, stage.region.cores()});
      if (record_trace) {
        const int32_t track = s.host_bytes > 0 ? -1 : s.stage;
        const bool merge = !detailed && !report.trace.empty() && report.trace.back().stage == track &&
                           report.trace.back().pass == phase.passes && report.trace.back().decode == decode;
        if (!merge)
          report.trace.push_back(
              {detailed ? s.name : fmt::format("{} (pass {})", track < 0 ? "host I/O" : stage.name, phase.passes),
               decode, track, phase.passes, clock, 0, 0, 0, detailed ? program::pattern_name(s.pattern) : "aggregate",
               0, 0, 0, 0, 0, stage.region.cores()});
        TraceSlice& slice = report.trace.back();
        slice.compute_cycles += c.compute, slice.comm_cycles += c.comm, slice.host_cycles += c.host;
        slice.macs += static_cast<int64_t>(static_cast<double>(s.macs + slots * s.macs_per_slot) * scale);
        slice.words += static_cast<int64_t>(std::ceil(static_cast<double>(s.words + slots * s.words_per_slot) * scale));
        slice.busiest_port_words = std::max(slice.busiest_port_words, c.fabric.busiest_port_words);
        slice.word_hops += c.fabric.word_hops;
        slice.host_bytes += s.host_bytes;
      }
      clock += c.compute + c.comm + c.host;
    }
    if (running >= 0) region_end[owner[static_cast<size_t>(running)]] = clock;
    return clock;
  };

  const int64_t chunk = plan.prefill_chunk_tokens;
  const int64_t total_passes = (plan.prompt_tokens + chunk - 1) / chunk + std::max<int64_t>(plan.max_new_tokens - 1, 0);
  int64_t passes_done = 0;
  auto progress = [&] {
    if (options.on_pass) options.on_pass(++passes_done, total_passes);
  };
  // Without a trace, a prefill pass other than the last (a whole chunk, no LM head) is walked
  // stage by stage instead of step by step: a stage's steps without per-slot terms cost the same
  // in every such pass (summed once, in `prefill_fixed` and the stage's `fixed` cycles), so only
  // its steps with them are costed; a stage starts as run_pass starts it.
  struct StageRun {
    int32_t stage;
    double fixed = 0;
    std::vector<size_t> growing;
  };
  std::vector<StageRun> stage_runs;
  PassSums prefill_fixed(plan.stages.size());
  const auto stage_pass = [&](int64_t context, PassSums& sums) {
    if (stage_runs.empty())
      for (size_t i = 0; i < plan.prefill.size(); ++i) {
        const program::Step& s = plan.prefill[i];
        if (s.last_chunk_only) continue;
        if (stage_runs.empty() || stage_runs.back().stage != s.stage) stage_runs.push_back({s.stage});
        if (per_slot(s)) {
          stage_runs.back().growing.push_back(i);
          continue;
        }
        const StepCost& c = prefill_costs.get(i, 0, 1.0);
        add_step(prefill_fixed, s, i, c, nullptr);
        stage_runs.back().fixed += c.compute + c.comm + c.host;
      }
    sums.add(prefill_fixed);
    double clock = 0;
    for (const StageRun& run : stage_runs) {
      double& region = region_end[owner[static_cast<size_t>(run.stage)]];
      clock = std::max(clock, region) + run.fixed;
      const int64_t split = plan.stages[static_cast<size_t>(run.stage)].context_split;
      for (size_t i : run.growing) {
        const StepCost& c = prefill_costs.get(i, (context + split - 1) / split, 1.0);
        add_step(sums, plan.prefill[i], i, c, nullptr);
        clock += c.compute + c.comm + c.host;
      }
      region = clock;
    }
    return clock;
  };
  double prefill_end = 0;
  PassSums prefill(plan.stages.size());
  for (int64_t done = 0; done < plan.prompt_tokens; done += chunk) {
    const int64_t tokens = std::min(chunk, plan.prompt_tokens - done);
    const bool last = done + tokens == plan.prompt_tokens;
    // Only a trace shows the first two passes step by step.
    const bool detailed = report.prefill.passes < 2 || last;
    if (reuse_costs && !record_trace && !last)
      prefill_end = stage_pass(done + tokens, prefill);
    else
      prefill_end = run_pass(plan.prefill, done + tokens, static_cast<double>(tokens) / static_cast<double>(chunk),
                             last, prefill, nullptr, detailed);
    ++report.prefill.passes;
    progress();
  }
  prefill.phase.passes = report.prefill.passes, prefill.phase.cycles = prefill_end;
  report.prefill = prefill.phase;
  finish_fractions(report.prefill, prefill.compute_core, prefill.comm_core, report.cores_used);
  report.time_to_first_token_s = report.prefill.cycles / a.clock_hz;

  std::vector<PortLoad> hot(plan.decode.size());  // per decode step
  // The first generated token comes out of prefill; each further one is a decode pass. A decode
  // pass starts when the token before is out, so one whose stages hold as many cached slots as
  // the pass before repeats it exactly (same step costs, same durations): its sums are added
  // again instead of walking its steps (the analytic tier's sweeps are mostly such passes).
  // Otherwise a pass's stages run one after another (each region is free by the time its stage
  // starts), so it lasts the sum of its steps' costs: the steps without per-slot terms cost the
  // same in every pass, summed once; only those with them (attention over the cache) are costed.
  double pass_end = prefill_end;
  PassSums decode(plan.stages.size()), last_pass(plan.stages.size()), fixed(plan.stages.size());
  std::vector<int64_t> last_slots;
  double last_duration = -1, fixed_duration = -1;
  std::vector<size_t> growing;  // decode steps with per-slot terms
  for (size_t i = 0; i < plan.decode.size(); ++i)
    if (per_slot(plan.decode[i])) growing.push_back(i);
  std::vector<int64_t> slots(plan.stages.size());
  for (int64_t t = 1; t < plan.max_new_tokens; ++t) {
    const int64_t context = plan.prompt_tokens + t;
    for (size_t i = 0; i < plan.stages.size(); ++i)
      slots[i] = (context + plan.stages[i].context_split - 1) / plan.stages[i].context_split;
    // The last pass is walked step by step for its per-step figures; a trace also shows the first two.
    const bool detailed = report.decode.passes < 2 || t + 1 == plan.max_new_tokens;
    const bool summed = reuse_costs && !record_trace && t + 1 != plan.max_new_tokens;
    if (summed && last_duration >= 0 && slots == last_slots) {
      // This pass and the ones after it up to the next change of any stage's slots (the last pass
      // is walked in detail): each repeats the pass before.
      int64_t end = plan.max_new_tokens - 1;
      for (size_t i = 0; i < plan.stages.size(); ++i)
        end = std::min(end, last_slots[i] * plan.stages[i].context_split - plan.prompt_tokens + 1);
      const int64_t repeats = end - t;
      pass_end += static_cast<double>(repeats) * last_duration;
      decode.add(last_pass, static_cast<double>(repeats));
      report.decode.passes += repeats;
      for (int64_t k = 0; k < repeats; ++k) progress();
      t = end - 1;
      continue;
    }
    if (summed) {
      if (fixed_duration < 0) {
        fixed_duration = 0;
        for (size_t i = 0; i < plan.decode.size(); ++i) {
          if (per_slot(plan.decode[i])) continue;
          const StepCost& c = decode_costs.get(i, 0, 1.0);
          add_step(fixed, plan.decode[i], i, c, &hot);
          fixed_duration += c.compute + c.comm + c.host;
        }
      }
      last_pass = fixed;
      double duration = fixed_duration;
      for (size_t i : growing) {
        const program::Step& s = plan.decode[i];
        const int64_t split = plan.stages[static_cast<size_t>(s.stage)].context_split;
        const StepCost& c = decode_costs.get(i, (context + split - 1) / split, 1.0);
        add_step(last_pass, s, i, c, &hot);
        duration += c.compute + c.comm + c.host;
      }
      pass_end += duration;
      last_duration = duration, last_slots = slots;
    } else {
      std::fill(region_end.begin(), region_end.end(), pass_end);  // the token before must be out
      last_pass = PassSums(plan.stages.size());
      const double start = pass_end;
      pass_end = run_pass(plan.decode, context, 1.0, true, last_pass, &hot, detailed);
      last_duration = pass_end - start, last_slots = slots;
    }
    decode.add(last_pass);
    ++report.decode.passes;
    progress();
  }
  decode.phase.passes = report.decode.passes, decode.phase.cycles = pass_end - prefill_end;
  report.decode = decode.phase;
  finish_fractions(report.decode, decode.compute_core, decode.comm_core, report.cores_used);
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    report.stage_compute_cycles[i] = prefill.stage_compute[i] + decode.stage_compute[i];
    report.stage_prefill_cycles.push_back(prefill.stage_busy[i]);
    report.stage_decode_energy_pj[i] = decode.stage_energy[i];
  }
  if (report.decode.passes > 0) {
    report.decode_tokens_per_s = static_cast<double>(report.decode.passes) / (report.decode.cycles / a.clock_hz);
    const double n = static_cast<double>(report.decode.passes);
    report.decode_energy_per_token = {report.decode.energy.compute_pj / n, report.decode.energy.sram_pj / n,
                                      report.decode.energy.fabric_pj / n, report.decode.energy.offchip_pj / n};
    for (double& e : report.stage_decode_energy_pj) e /= n;
  }
  std::vector<size_t> loaded;
  for (size_t i = 0; i < hot.size(); ++i)
    if (hot[i].words > 0) loaded.push_back(i);
  const size_t shown = std::min<size_t>(5, loaded.size());
  std::partial_sort(
      loaded.begin(), loaded.begin() + static_cast<std::ptrdiff_t>(shown), loaded.end(), [&](size_t x, size_t y) {
        return hot[x].words != hot[y].words ? hot[x].words > hot[y].words : plan.decode[x].name < plan.decode[y].name;
      });
  for (size_t k = 0; k < shown; ++k) {
    const PortLoad& h = hot[loaded[k]];
    report.busiest_steps.push_back({plan.decode[loaded[k]].name, h.words, h.port, h.name, h.word_hops});
  }
  if (options.link_loads) report.link_words = timer.link_words();
  if (!options.cycle_region.empty()) {
    report.cycle_region = timer.cycle_region();
    report.cycle_region.stage = options.cycle_region;
  }
  return report;
}

}  // namespace tessera::sim
