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
  const KTreeShape tree(n, group);
  auto add = [&](int64_t line, int64_t src, int64_t dst, std::vector<int32_t> deps) {
    c.flows.push_back({at(r, along_x, line, src), {at(r, along_x, line, dst)}, words, std::move(deps)});
    return static_cast<int32_t>(c.flows.size()) - 1;
  };
  // A chain from position `from` toward `to` (exclusive), each core adding its partial sum to
  // what reaches it: the flows into `to`, none if from == to.
  auto chain = [&](int64_t line, int64_t from, int64_t to, const std::vector<int32_t>& into_first) {
    std::vector<int32_t> upstream = into_first;
    for (int64_t p = from; p != to; p += to > from ? 1 : -1)
      upstream = {add(line, p, p + (to > from ? 1 : -1), upstream)};
    return upstream;
  };
  for (int64_t line = 0; line < lines; ++line) {
    // First phase: each group's two halves into its root; the flows delivering to each root.
    std::vector<std::vector<int32_t>> into_root(static_cast<size_t>(tree.groups));
    for (int64_t k = 0; k < tree.groups; ++k) {
      auto& into = into_root[static_cast<size_t>(k)];
      if (tree.root(k) > tree.first(k)) into = chain(line, tree.first(k), tree.root(k), {});
      if (tree.root(k) < tree.last(k)) {
        const auto below = chain(line, tree.last(k), tree.root(k), {});
        into.insert(into.end(), below.begin(), below.end());
      }
    }
    // Second phase: the roots on either side of the middle group's root relay toward it.
    for (int64_t k = 0; k < tree.middle; ++k) {
      const int32_t f = add(line, tree.root(k), tree.root(k + 1), into_root[static_cast<size_t>(k)]);
      into_root[static_cast<size_t>(k + 1)].push_back(f);
    }
    for (int64_t k = tree.groups - 1; k > tree.middle; --k) {
      const int32_t f = add(line, tree.root(k), tree.root(k - 1), into_root[static_cast<size_t>(k)]);
      into_root[static_cast<size_t>(k - 1)].push_back(f);
    }
    const int64_t top = tree.root(tree.middle);
    Flow broadcast{at(r, along_x, line, top), {}, words, into_root[static_cast<size_t>(tree.middle)]};
    for (int64_t p = 0; p < n; ++p)
      if (p != top) broadcast.dsts.push_back(at(r, along_x, line, p));
    c.flows.push_back(std::move(broadcast));
  }
  return c;
}

}  // namespace tessera::sim::patterns
