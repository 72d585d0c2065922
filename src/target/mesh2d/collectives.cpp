#include <algorithm>

#include "tessera/base/error.hpp"
#include "tessera/target/mesh2d/fabric.hpp"

namespace tessera::sim::patterns {

namespace {

// Core at position `pos` of line `line` (a row when along_x, else a column).
Coord at(const arch::Region& r, bool along_x, int64_t line, int64_t pos) {
  return along_x ? Coord{static_cast<int32_t>(r.x + pos), static_cast<int32_t>(r.y + line)}
                 : Coord{static_cast<int32_t>(r.x + line), static_cast<int32_t>(r.y + pos)};
}

}  // namespace

int32_t ring_next(int32_t p, int32_t n, bool interleaved) {
  if (!interleaved || n <= 2) return (p + 1) % n;
  if (p % 2 == 0) return p + 2 <= n - 1 ? p + 2 : (p == n - 1 ? n - 2 : n - 1);
  return p - 2 >= 0 ? p - 2 : 0;
}

Collective ring_shift(const arch::Region& r, int64_t words, bool along_x, bool interleaved) {
  Collective c;
  const auto n = static_cast<int32_t>(along_x ? r.width : r.height);
  const int64_t lines = along_x ? r.height : r.width;
  if (n < 2) return c;
  for (int64_t line = 0; line < lines; ++line)
    for (int32_t p = 0; p < n; ++p)
      c.flows.push_back({at(r, along_x, line, p), {at(r, along_x, line, ring_next(p, n, interleaved))}, words, {}});
  return c;
}

Collective gemm_shift(const arch::Region& r, int64_t a_words, int64_t b_words, bool interleaved) {
  Collective c = ring_shift(r, a_words, true, interleaved);
  Collective b = ring_shift(r, b_words, false, interleaved);
  c.flows.insert(c.flows.end(), b.flows.begin(), b.flows.end());
  return c;
}

Collective line_broadcast(const arch::Region& r, int64_t words, int32_t root, bool along_x) {
  const int64_t n = along_x ? r.width : r.height, lines = along_x ? r.height : r.width;
  if (root < 0 || root >= n) fail("broadcast root {} is outside the region's {} cores along its lines", root, n);
  Collective c;
  for (int64_t line = 0; line < lines; ++line) {
    Flow f{at(r, along_x, line, root), {}, words, {}};
    for (int64_t p = 0; p < n; ++p)
      if (p != root) f.dsts.push_back(at(r, along_x, line, p));
    if (!f.dsts.empty()) c.flows.push_back(std::move(f));
  }
  return c;
}

Collective ktree_allreduce(const arch::Region& r, int64_t words, int32_t group, bool along_x) {
  if (group < 1) fail("allreduce group size must be >= 1, got {}", group);
  Collective c;
  const int64_t n = along_x ? r.width : r.height, lines = along_x ? r.height : r.width;
  if (n < 2) return c;
  auto add = [&](Coord src, Coord dst, std::vector<int32_t> deps) {
    c.flows.push_back({src, {dst}, words, std::move(deps)});
    return static_cast<int32_t>(c.flows.size()) - 1;
  };
  for (int64_t line = 0; line < lines; ++line) {
    // into_root[k]: the flows that deliver partial sums to group k's root.
    std::vector<std::vector<int32_t>> into_root;
    for (int64_t start = 0; start < n; start += group) {
      const int64_t end = std::min(start + group, n) - 1;
      int32_t upstream = -1;
      for (int64_t p = end; p > start; --p)
        upstream = add(at(r, along_x, line, p), at(r, along_x, line, p - 1),
                       upstream < 0 ? std::vector<int32_t>{} : std::vector<int32_t>{upstream});
      into_root.push_back(upstream < 0 ? std::vector<int32_t>{} : std::vector<int32_t>{upstream});
    }
    for (auto k = static_cast<int64_t>(into_root.size()) - 1; k > 0; --k) {
      const int32_t f = add(at(r, along_x, line, k * group), at(r, along_x, line, (k - 1) * group),
                            into_root[static_cast<size_t>(k)]);
      into_root[static_cast<size_t>(k - 1)].push_back(f);
    }
    Flow broadcast{at(r, along_x, line, 0), {}, words, into_root[0]};
    for (int64_t p = 1; p < n; ++p) broadcast.dsts.push_back(at(r, along_x, line, p));
    c.flows.push_back(std::move(broadcast));
  }
  return c;
}

}  // namespace tessera::sim::patterns
