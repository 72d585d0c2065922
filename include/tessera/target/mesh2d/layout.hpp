// How a vector is split over a line of cores — part of the plan's contract, used by the compiler
// to size tiles and by the simulator to place data.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

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

// Grouped-query attention in the cols layout (docs/mesh-mapping.md): the queries are stored in
// group-interleaved order (for each KV head, for each dimension, the `group` query heads sharing
// it side by side) and split over the columns in whole groups with RoPE's pairs together (align
// 2 x group); keys and values are split at 1/group of that capacity, so the columns holding a
// query's dimensions also hold, once, the matching dimensions of its KV head.
inline int64_t query_capacity(int64_t query_width, int64_t columns, int64_t group) {
  return segment_capacity(query_width, columns, 2 * group);
}
inline int64_t key_value_capacity(int64_t query_width, int64_t columns, int64_t group) {
  return query_capacity(query_width, columns, group) / group;
}

// The columns (first, last) holding each KV head's queries in that layout: KV head h's `group`
// query heads take stored positions [h, h + 1) x group x head_dim. A column whose segment straddles
// two KV heads is in both spans. Attention's scores are reduced within each span (the other
// columns hold nothing of those heads), and each column keeps the scores of its own heads only.
struct ColumnSpan {
  int64_t first = 0, last = 0;
  bool operator==(const ColumnSpan&) const = default;
};
inline std::vector<ColumnSpan> kv_head_columns(int64_t query_width, int64_t columns, int64_t group, int64_t head_dim) {
  const int64_t cap = query_capacity(query_width, columns, group), per_kv_head = group * head_dim;
  std::vector<ColumnSpan> spans;
  for (int64_t begin = 0; begin < query_width; begin += per_kv_head)
    spans.push_back({begin / cap, (std::min(begin + per_kv_head, query_width) - 1) / cap});
  return spans;
}
// The most query heads any one column holds dimensions of (whole KV groups: `group` at a time):
// the most KV-head spans that share a column, times the group.
inline int64_t heads_per_column(int64_t query_width, int64_t columns, int64_t group, int64_t head_dim) {
  const std::vector<ColumnSpan> spans = kv_head_columns(query_width, columns, group, head_dim);
  int64_t most = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    int64_t sharing = 1;  // spans are in column order: those after i that reach back to its last column
    while (i + static_cast<size_t>(sharing) < spans.size() &&
           spans[i + static_cast<size_t>(sharing)].first <= spans[i].last)
      ++sharing;
    most = std::max(most, sharing);
  }
  return most * group;
}

}  // namespace tessera::program
