// Internal to the fabric timing code: dimension-ordered route trees.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "tessera/target/mesh2d/fabric.hpp"

namespace tessera::sim {

enum class Port : uint8_t { East = 0, West = 1, North = 2, South = 3, Eject = 4 };
inline constexpr unsigned kPorts = 5;
inline constexpr const char* kPortNames[kPorts] = {"east", "west", "north", "south", "eject"};

// The output ports a flow uses at each router (router id = y * width + x), X then Y routing.
struct RouteTree {
  // (router, mask) sorted by router, each router once; bit p set: the flow leaves it on port p.
  std::vector<std::pair<int32_t, uint8_t>> masks;
  int64_t max_hops = 0;
  int64_t links = 0;  // mesh links the tree crosses (each once)
  uint8_t mask_at(int32_t router) const {
    const auto it = std::lower_bound(masks.begin(), masks.end(), std::pair<int32_t, uint8_t>{router, 0});
    return it != masks.end() && it->first == router ? it->second : 0;
  }
};

// Throws Error if an endpoint lies outside the mesh.
RouteTree route_tree(const Flow& flow, int32_t width, int32_t height);
// Throws Error unless every relay dependency names an earlier flow of the same length that
// delivers to the relaying flow's source.
void check_dependencies(const Collective& collective);

}  // namespace tessera::sim
