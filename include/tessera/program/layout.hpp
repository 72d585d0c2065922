// How a vector is split over a line of cores — part of the plan's contract, used by the compiler
// to size tiles and by the simulator to place data.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tessera::program {

struct Segment {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// Part i of n elements split over `parts` cores in contiguous chunks of ceil(n / parts); trailing
// parts may be short or empty.
inline Segment segment(int64_t n, int64_t parts, int64_t i) {
  const int64_t chunk = (n + parts - 1) / parts;
  return {std::min(i * chunk, n), std::min((i + 1) * chunk, n)};
}

inline int64_t segment_capacity(int64_t n, int64_t parts) { return (n + parts - 1) / parts; }

}  // namespace tessera::program
