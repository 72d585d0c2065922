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

// Part i of n elements split over `parts` cores in contiguous chunks of ceil(n / parts), rounded
// up to a multiple of `align`; trailing parts may be short or empty. The model dimension is split
// over columns with align 2, so RoPE's dimension pairs (stored adjacent) never straddle two cores.
inline int64_t segment_capacity(int64_t n, int64_t parts, int64_t align = 1) {
  return ((n + parts - 1) / parts + align - 1) / align * align;
}

inline Segment segment(int64_t n, int64_t parts, int64_t i, int64_t align = 1) {
  const int64_t chunk = segment_capacity(n, parts, align);
  return {std::min(i * chunk, n), std::min((i + 1) * chunk, n)};
}

}  // namespace tessera::program
