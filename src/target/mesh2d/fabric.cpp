#include "tessera/target/mesh2d/fabric.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <map>
#include <tuple>
#include <unordered_map>

#include "fabric_routes.hpp"
#include "tessera/base/error.hpp"

namespace tessera::sim {

// Dimension-ordered routing (x first, then y) from one source: the union of the paths is the
// source row from the westmost to the eastmost destination column, then in each destination
// column the span from the source row to its farthest destinations, each link marked once.
RouteTree route_tree(const Flow& flow, int32_t width, int32_t height) {
  auto check = [&](Coord c) {
    if (c.x < 0 || c.y < 0 || c.x >= width || c.y >= height)
      fail("flow endpoint ({}, {}) is outside the {}x{} mesh", c.x, c.y, width, height);
  };
  check(flow.src);
  RouteTree tree;
  const auto mark = [&](int32_t x, int32_t y, Port port) {
    tree.masks.emplace_back(y * width + x, static_cast<uint8_t>(1u << static_cast<unsigned>(port)));
  };
  const Coord src = flow.src;
  int32_t west = src.x, east = src.x;
  std::map<int32_t, std::pair<int32_t, int32_t>> columns;  // x -> the lowest and highest destination row
  for (const Coord& dst : flow.dsts) {
    check(dst);
    west = std::min(west, dst.x), east = std::max(east, dst.x);
    const auto [it, added] = columns.try_emplace(dst.x, dst.y, dst.y);
    if (!added) it->second = {std::min(it->second.first, dst.y), std::max(it->second.second, dst.y)};
    mark(dst.x, dst.y, Port::Eject);
    tree.max_hops = std::max<int64_t>(tree.max_hops, std::abs(dst.x - src.x) + std::abs(dst.y - src.y));
  }
  for (int32_t x = src.x; x < east; ++x) mark(x, src.y, Port::East);
  for (int32_t x = src.x; x > west; --x) mark(x, src.y, Port::West);
  for (const auto& [x, rows] : columns) {
    for (int32_t y = src.y; y < rows.second; ++y) mark(x, y, Port::South);
    for (int32_t y = src.y; y > rows.first; --y) mark(x, y, Port::North);
  }
  // One entry per router, its ports' bits together.
  std::sort(tree.masks.begin(), tree.masks.end());
  size_t kept = 0;
  for (const auto& [router, mask] : tree.masks) {
    if (kept > 0 && tree.masks[kept - 1].first == router)
      tree.masks[kept - 1].second |= mask;
    else
      tree.masks[kept++] = {router, mask};
  }
  tree.masks.resize(kept);
  for (const auto& [router, mask] : tree.masks) tree.links += std::popcount(static_cast<uint8_t>(mask & 0x0f));
  return tree;
}

void check_dependencies(const Collective& c) {
  for (size_t i = 0; i < c.flows.size(); ++i)
    for (int32_t d : c.flows[i].deps) {
      if (d < 0 || static_cast<size_t>(d) >= i) fail("flow {} relays flow {}, which does not precede it", i, d);
      const auto& up = c.flows[static_cast<size_t>(d)];
      if (std::find(up.dsts.begin(), up.dsts.end(), c.flows[i].src) == up.dsts.end())
        fail("flow {} relays flow {}, which does not deliver to its source core", i, d);
      if (up.words != c.flows[i].words) fail("flow {} relays flow {} of a different length", i, d);
    }
}

std::vector<MeshFabric::LinkLoad> MeshFabric::link_loads(const Collective& collective) const {
  std::unordered_map<int64_t, int64_t> loads;  // router * 4 + direction
  for (const Flow& f : collective.flows) {
    if (f.words == 0 || f.dsts.empty()) continue;
    for (const auto& [router, mask] : route_tree(f, width_, height_).masks)
      for (unsigned p = 0; p < 4; ++p)
        if (mask & (1u << p)) loads[int64_t{router} * 4 + p] += f.words;
  }
  std::vector<LinkLoad> out;
  for (const auto& [key, words] : loads)
    out.push_back({static_cast<int32_t>((key / 4) % width_), static_cast<int32_t>((key / 4) / width_),
                   static_cast<uint8_t>(key % 4), words});
  std::sort(out.begin(), out.end(), [](const LinkLoad& a, const LinkLoad& b) {
    return std::tie(a.y, a.x, a.direction) < std::tie(b.y, b.x, b.direction);
  });
  return out;
}

MeshFabric::MeshFabric(int32_t width, int32_t height, const arch::LinkSpec& link)
    : width_(width), height_(height), link_(link) {
  TESSERA_ASSERT(width > 0 && height > 0 && link.bytes_per_cycle > 0);
}

namespace {

// Above this many streams through one port, the per-stream FIFO estimate (quadratic in the
// streams) gives way to the work-conserving bound for the port as a whole.
constexpr size_t kMaxStreamsForFifoModel = 32;

struct PortUse {
  int64_t port;  // router * kPorts + port, or inject_base + core for a core's injection ramp
  double first_arrival;
  int64_t words;
  int64_t order;  // position in the order pass 1 made the uses (each flow's: injection, then its tree)
};

// Orders uses by port, and within a port by first arrival: a stable radix sort on the port (8 bits
// a pass, as many passes as the largest port needs), then each port's few uses by arrival. Equal
// arrivals at one port may come in any order: the FIFO estimate below does not depend on it.
void sort_by_port_then_arrival(std::vector<PortUse>& uses) {
  int64_t largest = 0;
  for (const PortUse& u : uses) largest = std::max(largest, u.port);
  std::vector<PortUse> buffer(uses.size());
  for (int shift = 0; (largest >> shift) > 0; shift += 8) {
    std::array<size_t, 257> start{};
    for (const PortUse& u : uses) ++start[static_cast<size_t>((u.port >> shift) & 0xff) + 1];
    for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    for (const PortUse& u : uses) buffer[start[static_cast<size_t>((u.port >> shift) & 0xff)]++] = u;
    uses.swap(buffer);
  }
  for (size_t begin = 0; begin < uses.size();) {
    size_t end = begin + 1;
    while (end < uses.size() && uses[end].port == uses[begin].port) ++end;
    if (end - begin > 1)
      std::sort(uses.begin() + static_cast<std::ptrdiff_t>(begin), uses.begin() + static_cast<std::ptrdiff_t>(end),
                [](const PortUse& a, const PortUse& b) { return a.first_arrival < b.first_arrival; });
    begin = end;
  }
}

// Visits a route tree from its source: visit(router, port, hops from the source) for every output
// port the flow uses, parents before children.
template <typename Visit>
void walk_tree(const RouteTree& tree, int32_t width, int32_t source, Visit&& visit) {
  std::vector<std::pair<int32_t, int64_t>> stack{{source, 0}};
  while (!stack.empty()) {
    const auto [router, hops] = stack.back();
    stack.pop_back();
    const uint8_t mask = tree.mask_at(router);
    for (unsigned p = 0; p < kPorts; ++p) {
      if (!(mask & (1u << p))) continue;
      const auto port = static_cast<Port>(p);
      visit(router, port, hops);
      if (port == Port::Eject) continue;
      const int32_t next = port == Port::East    ? router + 1
                           : port == Port::West  ? router - 1
                           : port == Port::South ? router + width
                                                 : router - width;
      stack.emplace_back(next, hops + 1);
    }
  }
}

}  // namespace

CommCost MeshFabric::fast_cost(const Collective& collective) const {
  check_dependencies(collective);
  const auto& flows = collective.flows;
  const double ramp = link_.ramp_latency_cycles, hop = link_.hop_latency_cycles;
  const double rate = link_.bytes_per_cycle / 4.0;  // wavelets per cycle
  const int64_t inject_base = int64_t{width_} * height_ * kPorts;
  std::vector<RouteTree> trees(flows.size());
  std::vector<int64_t> first_use(flows.size(), 0);  // each flow's first use in pass 1's order
  std::vector<double> first_ready(flows.size(), 0.0);
  std::vector<int64_t> depth(flows.size(), 1);
  std::vector<PortUse> uses;
  CommCost cost;
  auto core_of = [&](Coord c) { return c.y * width_ + c.x; };

  // Pass 1: when each flow's first wavelet reaches each port, ignoring contention.
  for (size_t i = 0; i < flows.size(); ++i) {
    const Flow& f = flows[i];
    if (f.words == 0 || f.dsts.empty()) continue;
    trees[i] = route_tree(f, width_, height_);
    for (int32_t d : f.deps) {
      const Flow& up = flows[static_cast<size_t>(d)];
      const auto hops = static_cast<double>(std::abs(f.src.x - up.src.x) + std::abs(f.src.y - up.src.y));
      first_ready[i] = std::max(first_ready[i], first_ready[static_cast<size_t>(d)] + 2 * ramp + hops * hop + 1);
      depth[i] = std::max(depth[i], depth[static_cast<size_t>(d)] + 1);
    }
    first_use[i] = static_cast<int64_t>(uses.size());
    uses.push_back({inject_base + core_of(f.src), first_ready[i], f.words, static_cast<int64_t>(uses.size())});
    walk_tree(trees[i], width_, core_of(f.src), [&](int32_t router, Port port, int64_t hops) {
      uses.push_back({int64_t{router} * kPorts + static_cast<int64_t>(port),
                      first_ready[i] + ramp + static_cast<double>(hops) * hop, f.words,
                      static_cast<int64_t>(uses.size())});
    });
    cost.word_hops += f.words * trees[i].links;
    cost.longest_route_hops = std::max(cost.longest_route_hops, trees[i].max_hops);
    cost.depth = std::max(cost.depth, depth[i]);
  }
  if (uses.empty()) return cost;

  // Pass 2: each port forwards `rate` wavelets per cycle, first come first served. A stream
  // arrives at the port at up to `rate` wavelets per cycle from its first arrival; it is done when
  // the port has also served everything other streams brought before its own last wavelet came
  // (a fluid approximation of the FIFO, counting each stream's arrivals up to that moment).
  sort_by_port_then_arrival(uses);
  std::vector<double> done(uses.size());  // when each use's port has served its flow, by pass 1's order
  for (size_t begin = 0; begin < uses.size();) {
    size_t end = begin;
    int64_t load = 0;
    while (end < uses.size() && uses[end].port == uses[begin].port) load += uses[end++].words;
    const int64_t port = uses[begin].port;
    if (load > cost.busiest_port_words) {
      cost.busiest_port_words = load;
      const bool inject = port >= inject_base;
      const int64_t router = inject ? port - inject_base : port / kPorts;
      cost.busiest_port = {static_cast<int32_t>(router % width_), static_cast<int32_t>(router / width_)};
      cost.busiest_port_name = inject ? "inject" : kPortNames[static_cast<size_t>(port % kPorts)];
    }
    if (port < inject_base && port % kPorts != static_cast<int64_t>(Port::Eject)) ++cost.active_links;
    if (end - begin > kMaxStreamsForFifoModel) {
      // Many streams through one port: the plain work-conserving bound, for all of them.
      double finish = 0, suffix = 0;
      for (size_t k = end; k-- > begin;) {
        suffix += static_cast<double>(uses[k].words) / rate;
        finish = std::max(finish, uses[k].first_arrival + suffix);
      }
      for (size_t k = begin; k < end; ++k) done[static_cast<size_t>(uses[k].order)] = finish;
      begin = end;
      continue;
    }
    for (size_t k = begin; k < end; ++k) {
      const double last_in = uses[k].first_arrival + static_cast<double>(uses[k].words) / rate;
      double finish = last_in, backlog = 0;
      for (size_t m = end; m-- > begin;) {
        if (uses[m].first_arrival >= last_in) continue;
        backlog += std::min(static_cast<double>(uses[m].words) / rate, last_in - uses[m].first_arrival);
        finish = std::max(finish, uses[m].first_arrival + backlog);
      }
      done[static_cast<size_t>(uses[k].order)] = finish;
    }
    begin = end;
  }

  // Pass 3: when each flow's last wavelet arrives: it leaves each port no earlier than the port is
  // done, and a relay's last wavelet waits for the last wavelet it relays. The tree is walked in
  // pass 1's order, so each port's use is the next in `done`.
  std::vector<std::vector<std::pair<int32_t, double>>> last_arrival(flows.size());  // (core, cycle) per flow
  for (size_t i = 0; i < flows.size(); ++i) {
    const Flow& f = flows[i];
    if (f.words == 0 || f.dsts.empty()) continue;
    double last_ready = first_ready[i] + static_cast<double>(f.words) / rate - 1;
    for (int32_t d : f.deps) {
      const auto& arrivals = last_arrival[static_cast<size_t>(d)];
      const auto at =
          std::find_if(arrivals.begin(), arrivals.end(), [&](const auto& a) { return a.first == core_of(f.src); });
      last_ready = std::max(last_ready, at->second + 1);
    }
    auto next_done = done.begin() + first_use[i];
    const double leave_core = std::max(last_ready, *next_done++ - 1);
    std::vector<std::pair<int32_t, double>> stack{{core_of(f.src), leave_core + ramp}};
    while (!stack.empty()) {
      const auto [router, arrive] = stack.back();
      stack.pop_back();
      const uint8_t mask = trees[i].mask_at(router);
      for (unsigned p = 0; p < kPorts; ++p) {
        if (!(mask & (1u << p))) continue;
        const auto port = static_cast<Port>(p);
        const double leave = std::max(arrive, *next_done++ - 1);
        if (port == Port::Eject) {
          last_arrival[i].emplace_back(router, leave + ramp);
          cost.cycles = std::max(cost.cycles, leave + ramp);
          continue;
        }
        const int32_t next = port == Port::East    ? router + 1
                             : port == Port::West  ? router - 1
                             : port == Port::South ? router + width_
                                                   : router - width_;
        stack.emplace_back(next, leave + hop);
      }
    }
  }
  return cost;
}

double streamed_cycles(double compute, const CommCost& all, const CommCost& one_word, double words_per_cycle) {
  const double stream = std::ceil(static_cast<double>(all.busiest_port_words) / words_per_cycle);
  const double latency =
      std::max(0.0, one_word.cycles - std::ceil(static_cast<double>(one_word.busiest_port_words) / words_per_cycle));
  return std::max(compute, stream) + latency;
}

}  // namespace tessera::sim
