// How a mixture of experts' tokens spread over its experts when no router has run (timing-only
// runs): each token picks `top_k` distinct experts uniformly at random, which is what a router
// trained with a load-balancing loss (Mixtral's, Switch Transformer's) aims for. tessera's
// assumption; a trained router on real text is less even.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::compiler {

// Uniform: each token's experts drawn at random (the default). Balanced: every expert gets the
// same share of the tokens, the ideal a load-balancing loss aims at: comparing the two is what
// routing imbalance costs.
enum class Routing { Uniform, Balanced };
const char* routing_name(Routing routing);
// Throws Error naming the choices.
Routing parse_routing(const std::string& name);

struct ExpertLoads {
  // Tokens each expert of the busiest device gets (experts dealt round-robin, expert e on device
  // e % devices), largest first, zeros dropped: the expectation over seeded draws of that device's
  // sorted loads, rounded to the nearest token. Draws: 2^16 / (tokens x top_k), between 8 and 256
  // (few tokens vary most from draw to draw).
  std::vector<int64_t> busiest_device;
  // The expected number of that device's experts with any token (weight matrices it reads); in a
  // small batch less than busiest_device.size() suggests (one token: 1.43 of 4 experts on each
  // of 2 devices, where the rounded loads say 1).
  double experts_used = 0;
  double experts_used_anywhere = 0;  // expected experts with any token, over all devices
  double expert_imbalance = 1;       // expected busiest expert's tokens / the mean (tokens x top_k / experts)
  double device_imbalance = 1;       // expected busiest device's tokens / the mean (tokens x top_k / devices)
};

// Throws Error unless 1 <= top_k <= experts, tokens >= 0 and devices >= 1. Deterministic.
ExpertLoads expert_loads(Routing routing, int64_t tokens, int64_t experts, int64_t top_k, int64_t devices);

// What a plan's routing gives a layer's experts in prefill (every prompt token of the batch) and
// in a decode step (one token per request), for reports. Empty `routing`: no experts.
struct RoutingReport {
  std::string routing;
  int64_t experts = 0, experts_per_token = 0, devices = 1;
  ExpertLoads prefill, decode;
};
// `routing` as a plan records it ("" for a model without experts).
RoutingReport routing_report(const std::string& routing, int64_t experts, int64_t experts_per_token, int64_t batch,
                             int64_t prompt_tokens, int64_t devices);

}  // namespace tessera::compiler
