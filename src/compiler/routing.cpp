#include "tessera/compiler/routing.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "tessera/base/error.hpp"

namespace tessera::compiler {

const char* routing_name(Routing routing) { return routing == Routing::Uniform ? "uniform" : "balanced"; }

Routing parse_routing(const std::string& name) {
  if (name == "uniform") return Routing::Uniform;
  if (name == "balanced") return Routing::Balanced;
  fail("routing '{}': choose uniform (each token's experts at random) or balanced (every expert the same share)", name);
}

namespace {

// Every expert gets tokens x top_k / experts tokens, the remainder one each to the first experts.
ExpertLoads balanced_loads(int64_t tokens, int64_t experts, int64_t top_k, int64_t devices) {
  const int64_t assignments = tokens * top_k;
  std::vector<int64_t> load(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e)
    load[static_cast<size_t>(e)] = assignments / experts + (e < assignments % experts);
  ExpertLoads out;
  int64_t best = -1;
  for (int64_t d = 0; d < devices; ++d) {
    std::vector<int64_t> mine;
    int64_t sum = 0;
    for (int64_t e = d; e < experts; e += devices)
      if (load[static_cast<size_t>(e)] > 0) mine.push_back(load[static_cast<size_t>(e)]), sum += mine.back();
    if (sum > best) best = sum, out.busiest_device = mine;
  }
  out.experts_used = static_cast<double>(out.busiest_device.size());
  out.experts_used_anywhere = static_cast<double>(std::min(assignments, experts));
  if (assignments > 0) {
    out.expert_imbalance =
        static_cast<double>(load.front()) / (static_cast<double>(assignments) / static_cast<double>(experts));
    out.device_imbalance =
        static_cast<double>(best) / (static_cast<double>(assignments) / static_cast<double>(devices));
  }
  return out;
}

}  // namespace

RoutingReport routing_report(const std::string& routing, int64_t experts, int64_t experts_per_token, int64_t batch,
                             int64_t prompt_tokens, int64_t devices) {
  RoutingReport r;
  if (routing.empty()) return r;
  const Routing chosen = parse_routing(routing);
  r.routing = routing, r.experts = experts, r.experts_per_token = experts_per_token, r.devices = devices;
  r.prefill = expert_loads(chosen, batch * prompt_tokens, experts, experts_per_token, devices);
  r.decode = expert_loads(chosen, batch, experts, experts_per_token, devices);
  return r;
}

ExpertLoads expert_loads(Routing routing, int64_t tokens, int64_t experts, int64_t top_k, int64_t devices) {
  if (top_k < 1 || top_k > experts || tokens < 0 || devices < 1)
    fail("routing {} tokens to {} of {} experts over {} devices: need 1 <= top_k <= experts and devices >= 1", tokens,
         top_k, experts, devices);
  if (routing == Routing::Balanced) return balanced_loads(tokens, experts, top_k, devices);
  const int64_t per_device = (experts + devices - 1) / devices;
  std::mt19937_64 rng(0x7e55e7a);  // fixed: the same request always times the same
  std::vector<double> busiest_sum(static_cast<size_t>(per_device), 0.0);
  double busiest_expert = 0, busiest_device = 0, used = 0, used_anywhere = 0;
  std::vector<int64_t> load(static_cast<size_t>(experts)), order(static_cast<size_t>(experts));
  std::iota(order.begin(), order.end(), 0);
  const int64_t draws = std::clamp<int64_t>((int64_t{1} << 16) / std::max<int64_t>(1, tokens * top_k), 8, 256);
  for (int64_t draw = 0; draw < draws; ++draw) {
    std::fill(load.begin(), load.end(), 0);
    for (int64_t t = 0; t < tokens; ++t) {
      // A partial Fisher-Yates shuffle picks top_k distinct experts (from any order of them).
      for (int64_t j = 0; j < top_k; ++j) {
        const auto pick = j + static_cast<int64_t>(rng() % static_cast<uint64_t>(experts - j));
        std::swap(order[static_cast<size_t>(j)], order[static_cast<size_t>(pick)]);
        ++load[static_cast<size_t>(order[static_cast<size_t>(j)])];
      }
    }
    int64_t best_device = 0, best_tokens = -1;
    for (int64_t d = 0; d < devices; ++d) {
      int64_t sum = 0;
      for (int64_t e = d; e < experts; e += devices) sum += load[static_cast<size_t>(e)];
      if (sum > best_tokens) best_tokens = sum, best_device = d;
    }
    std::vector<int64_t> mine;
    for (int64_t e = best_device; e < experts; e += devices) mine.push_back(load[static_cast<size_t>(e)]);
    std::sort(mine.rbegin(), mine.rend());
    used += static_cast<double>(std::count_if(mine.begin(), mine.end(), [](int64_t n) { return n > 0; }));
    for (size_t i = 0; i < mine.size(); ++i) busiest_sum[i] += static_cast<double>(mine[i]);
    busiest_expert += static_cast<double>(*std::max_element(load.begin(), load.end()));
    used_anywhere += static_cast<double>(std::count_if(load.begin(), load.end(), [](int64_t n) { return n > 0; }));
    busiest_device += static_cast<double>(best_tokens);
  }
  ExpertLoads out;
  for (double sum : busiest_sum) {
    const int64_t expected = std::llround(sum / static_cast<double>(draws));
    if (expected > 0) out.busiest_device.push_back(expected);
  }
  out.experts_used = used / static_cast<double>(draws);
  out.experts_used_anywhere = used_anywhere / static_cast<double>(draws);
  const double assignments = static_cast<double>(tokens * top_k);
  if (assignments > 0) {
    out.expert_imbalance = busiest_expert / static_cast<double>(draws) / (assignments / static_cast<double>(experts));
    out.device_imbalance = busiest_device / static_cast<double>(draws) / (assignments / static_cast<double>(devices));
  }
  return out;
}

}  // namespace tessera::compiler
