// The cycle-level fabric mode: every 32-bit wavelet is moved link by link, cycle by cycle.
//
// Model: a core injects up to `rate` wavelets per cycle into its router (round-robin over its
// flows) and they reach the router ramp_latency cycles later. Each router output port (four links
// and the ejection ramp) forwards up to `rate` wavelets per cycle, first come first served;
// crossing a link takes hop_latency cycles, ejection reaches the core ramp_latency cycles later.
// Multicast copies a wavelet into every output port its route tree uses at that router. Queues
// are unbounded (no backpressure). A relaying flow's wavelet i is ready one cycle after all the
// flows it relays have delivered their wavelet i to its core.
#include <algorithm>
#include <cmath>
#include <deque>

#include "fabric_routes.hpp"
#include "tessera/base/error.hpp"

namespace tessera::sim {

namespace {

struct Event {
  int32_t place;  // router id (to_router) or core id (to core)
  int32_t flow;
  int32_t index;
  bool to_core;
};

struct Entry {
  int32_t flow;
  int32_t index;
};

int64_t whole(double value, const char* what) {
  const double r = std::round(value);
  if (std::abs(r - value) > 1e-9 || r < 0)
    fail("the cycle-level fabric mode needs a whole, non-negative {}; got {}", what, value);
  return static_cast<int64_t>(r);
}

}  // namespace

CommCost MeshFabric::cycle_level_cost(const Collective& collective) const {
  if (static_cast<int64_t>(width_) * height_ > kMaxCycleLevelRouters)
    fail(
        "the cycle-level fabric mode moves wavelets through at most {} routers (256 x 256); this collective spans {} "
        "x {}: use the flow tier",
        kMaxCycleLevelRouters, width_, height_);
  check_dependencies(collective);
  const int64_t rate = whole(link_.bytes_per_cycle / 4.0, "number of 32-bit wavelets per link per cycle");
  const int64_t hop = whole(link_.hop_latency_cycles, "hop latency");
  const int64_t ramp = whole(link_.ramp_latency_cycles, "ramp latency");
  if (rate < 1 || hop < 1) fail("the cycle-level fabric mode needs >= 1 wavelet per cycle and a hop latency >= 1");

  const auto& flows = collective.flows;
  const size_t n_flows = flows.size();
  const int32_t cores = width_ * height_;
  std::vector<RouteTree> trees(n_flows);
  std::vector<std::vector<int32_t>> flows_at_core(static_cast<size_t>(cores));
  std::vector<std::vector<int32_t>> relays_of(n_flows);
  std::vector<std::vector<int32_t>> missing(n_flows);  // per relay flow: deps still to arrive, per wavelet
  std::vector<std::vector<int64_t>> ready(n_flows);    // per flow: cycle each wavelet may be injected
  std::vector<int64_t> next_to_inject(n_flows, 0);
  int64_t expected = 0;
  for (size_t f = 0; f < n_flows; ++f) {
    const Flow& flow = flows[f];
    if (flow.words == 0 || flow.dsts.empty()) continue;
    trees[f] = route_tree(flow, width_, height_);
    flows_at_core[static_cast<size_t>(flow.src.y * width_ + flow.src.x)].push_back(static_cast<int32_t>(f));
    ready[f].assign(static_cast<size_t>(flow.words), flow.deps.empty() ? 0 : INT64_MAX);
    if (!flow.deps.empty()) missing[f].assign(static_cast<size_t>(flow.words), static_cast<int32_t>(flow.deps.size()));
    for (int32_t d : flow.deps) relays_of[static_cast<size_t>(d)].push_back(static_cast<int32_t>(f));
    expected += flow.words * static_cast<int64_t>(flow.dsts.size());
  }

  std::vector<std::vector<Event>> buckets;
  auto schedule = [&](int64_t time, Event e) {
    if (buckets.size() <= static_cast<size_t>(time)) buckets.resize(static_cast<size_t>(time) + 64);
    buckets[static_cast<size_t>(time)].push_back(e);
  };
  std::vector<std::deque<Entry>> queues(static_cast<size_t>(cores) * kPorts);
  std::vector<int32_t> active_ports;
  std::vector<bool> is_active(queues.size(), false);
  std::vector<int32_t> injecting_cores;
  for (int32_t c = 0; c < cores; ++c)
    if (!flows_at_core[static_cast<size_t>(c)].empty()) injecting_cores.push_back(c);
  std::vector<size_t> round_robin(static_cast<size_t>(cores), 0);

  int64_t delivered = 0, last_arrival = 0, word_hops = 0;
  auto handle = [&](int64_t t, const Event& e) {
    if (e.to_core) {
      ++delivered;
      last_arrival = std::max(last_arrival, t);
      for (int32_t g : relays_of[static_cast<size_t>(e.flow)]) {
        const Flow& relay = flows[static_cast<size_t>(g)];
        if (relay.src.y * width_ + relay.src.x != e.place) continue;
        if (--missing[static_cast<size_t>(g)][static_cast<size_t>(e.index)] == 0)
          ready[static_cast<size_t>(g)][static_cast<size_t>(e.index)] = t + 1;
      }
      return;
    }
    const uint8_t mask = trees[static_cast<size_t>(e.flow)].mask_at(e.place);
    for (unsigned p = 0; p < kPorts; ++p) {
      if (!(mask & (1u << p))) continue;
      const size_t q = static_cast<size_t>(e.place) * kPorts + p;
      queues[q].push_back({e.flow, e.index});
      if (!is_active[q]) is_active[q] = true, active_ports.push_back(static_cast<int32_t>(q));
    }
  };
  auto drain = [&](int64_t t) {
    if (static_cast<size_t>(t) >= buckets.size()) return;
    for (size_t i = 0; i < buckets[static_cast<size_t>(t)].size(); ++i) handle(t, buckets[static_cast<size_t>(t)][i]);
    buckets[static_cast<size_t>(t)].clear();
  };

  for (int64_t t = 0;; ++t) {
    if (delivered >= expected) break;  // `handle` counts the words delivered
    if (t > 100'000'000) fail("cycle-level fabric simulation did not finish in 1e8 cycles");
    drain(t);
    for (int32_t core : injecting_cores) {
      auto& mine = flows_at_core[static_cast<size_t>(core)];
      int64_t sent = 0;
      for (size_t k = 0; k < mine.size() && sent < rate; ++k) {
        const int32_t f = mine[(round_robin[static_cast<size_t>(core)] + k) % mine.size()];
        auto& next = next_to_inject[static_cast<size_t>(f)];
        while (sent < rate && next < flows[static_cast<size_t>(f)].words &&
               ready[static_cast<size_t>(f)][static_cast<size_t>(next)] <= t) {
          schedule(t + ramp, {core, f, static_cast<int32_t>(next), false});
          ++next, ++sent;
        }
      }
      round_robin[static_cast<size_t>(core)]++;
    }
    drain(t);
    std::vector<int32_t> still_active;
    for (int32_t q : active_ports) {
      auto& queue = queues[static_cast<size_t>(q)];
      const int32_t router = q / static_cast<int32_t>(kPorts);
      const auto port = static_cast<Port>(q % static_cast<int32_t>(kPorts));
      for (int64_t k = 0; k < rate && !queue.empty(); ++k) {
        const Entry e = queue.front();
        queue.pop_front();
        if (port == Port::Eject) {
          if (ramp == 0)
            handle(t, {router, e.flow, e.index, true});
          else
            schedule(t + ramp, {router, e.flow, e.index, true});
          continue;
        }
        const int32_t next = port == Port::East    ? router + 1
                             : port == Port::West  ? router - 1
                             : port == Port::South ? router + width_
                                                   : router - width_;
        schedule(t + hop, {next, e.flow, e.index, false});
        ++word_hops;
      }
      if (queue.empty())
        is_active[static_cast<size_t>(q)] = false;
      else
        still_active.push_back(q);
    }
    active_ports.swap(still_active);
  }

  CommCost cost = fast_cost(collective);  // structural figures are the same in both modes
  cost.cycles = static_cast<double>(last_arrival);
  TESSERA_ASSERT(word_hops == cost.word_hops);
  return cost;
}

}  // namespace tessera::sim
