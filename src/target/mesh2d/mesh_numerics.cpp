#include "tessera/target/mesh2d/mesh_numerics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>
#include <optional>
#include <set>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"
#include "tessera/compiler/lowering.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/ref/kernels.hpp"
#include "tessera/target/mesh2d/layout.hpp"

namespace tessera::sim {

namespace {

using compiler::LoweredKind;
using compiler::LoweredOp;
using program::Segment;
using program::segment;
using program::segment_capacity;

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// The two layouts of docs/mesh-mapping.md: rows (a vector split over the region's rows,
// replicated along each row) and cols (split over the columns, replicated down each column).
enum class Layout { Rows, Cols };

// The order a vector's elements are stored in, against the graph's: RoPE's operands keep each
// head's dimensions pair-adjacent ((2i, 2i+1) holds the pair (i, i + head_dim/2)), and the
// queries of grouped-query attention (and its output) are group-interleaved: for each KV head and
// dimension, the `group` query heads sharing it side by side (program/layout.hpp).
struct Order {
  int64_t head_dim = 0;  // 0: the graph's own order
  bool pairs = false;
  int64_t group = 1;
  bool operator==(const Order&) const = default;

  int64_t dim(int64_t s) const { return group > 1 ? (s / group) % head_dim : s % head_dim; }  // stored
  int64_t head(int64_t s) const { return group > 1 ? s / (head_dim * group) * group + s % group : s / head_dim; }
  // Stored index -> the graph's index.
  int64_t graph_index(int64_t s) const {
    if (head_dim == 0) return s;
    const int64_t e = dim(s), half = head_dim / 2;
    return head(s) * head_dim + (pairs ? (e % 2 == 0 ? e / 2 : e / 2 + half) : e);
  }
};

// A tensor of a stage: parts side by side (q|k|v), each split over the lines of its layout in
// segments of its capacity (program/layout.hpp). Every core of a line holds the same copy of its
// segment, so the host stores one copy per line: [line][token][stride], at `offset` of the
// stage's activation store.
struct Buffer {
  Layout layout = Layout::Rows;
  std::vector<int64_t> widths, caps, starts;  // per part: elements, per-core capacity, place in a token's floats
  std::vector<Order> orders;
  int64_t offset = 0;
  int64_t stride() const { return starts.back() + caps.back(); }  // floats per token on a core
  int64_t width() const { return widths.front(); }                // of a one-part buffer
  Segment seg(int64_t line, size_t part = 0) const {
    const int64_t w = widths[part], cap = caps[part];
    return {std::min(line * cap, w), std::min((line + 1) * cap, w)};
  }
};

// Where a graph node's value lives: part `part` of a stage buffer.
struct Ref {
  int buffer = -1;
  int64_t part = 0;
};

// A lowered op bound to its stage's buffers and weights. Weights are stored for all cores of the
// stage, arranged so a kernel over a line of cores reads them contiguously: a projection from the
// rows layout as [row j][k][column i][n], one from the cols layout as [column i][k][row j][n];
// norm vectors and biases once per line of the layout they are applied in.
struct StageOp {
  const LoweredOp* op = nullptr;
  std::vector<Ref> in;
  int out = -1;
  int64_t weight = 0, bias = 0, tile_rows = 0, tile_width = 0;  // projection: each core's W[k][n] tile
  Order in_order;                                               // projection: its input's stored order
  int64_t gamma = 0, beta = -1;                                 // norm vectors (beta: LayerNorm)
  float eps = 0;
  bool exact_gelu = false;  // activation: GELU's erf form
  ref::RopeTable rope;
  // A mixture of experts: its gate|up outputs and SiLU x up (cols layout, per chosen expert), each
  // expert's d_ff per column, and its down projection's tiles (at `weight_down`). Every core holds
  // a tile of every expert; one expert's tiles span `expert_weight` (`expert_down`) host floats.
  int gate_up = -1, hidden = -1;
  int64_t ff_cap = 0, weight_down = 0, expert_weight = 0, expert_down = 0;
};

// One stage's cores. `weights` persist for the whole run (with the KV cache, per core
// [row j][column i][slot][dimension]); `scratch` is the activation store, shared by all stages
// (they run one after another).
struct StageArenas {
  arch::Region region;
  int64_t px = 0, py = 0;
  bool is_head = false;
  int64_t slots = 0, tokens = 0;
  std::vector<Buffer> buffers;
  int input = -1, output = -1;         // the rows the stage receives, and what it hands on
  std::map<std::string, StageOp> ops;  // by lowered op name (a plan step's `node`)
  int64_t k_cache = 0, v_cache = 0, kv_cap = 0, heads = 0, group = 1;  // one attention per stage
  bool causal = true;  // its queries see the keys up to their own position (else all of the pass's)
  // Scratch: each core's partial sums ([reduced line][token][the other lines x per core]), the
  // reduced result, attention scores [token][row][head][slot] and whole-stage statistics.
  // A mixture of experts' routing: per token, its top_k experts and their weights (expert, weight).
  int64_t partial = 0, reduced = 0, scores = 0, mean = 0, squares = 0, max = 0, sums = 0, routes = 0;
  int64_t core_floats = 0;  // one core's share: its weights, KV cache and activations
  std::vector<float> weights;
  float* scratch = nullptr;

  float* line(const Buffer& b, int64_t l, int64_t t) { return scratch + b.offset + (l * tokens + t) * b.stride(); }
  float* at(const Ref& r, int64_t l, int64_t t) {
    const Buffer& b = buffers.at(static_cast<size_t>(r.buffer));
    return line(b, l, t) + b.starts[static_cast<size_t>(r.part)];
  }
  const Buffer& buf(const Ref& r) const { return buffers.at(static_cast<size_t>(r.buffer)); }
  const Buffer& buf(int b) const { return buffers.at(static_cast<size_t>(b)); }
  Segment seg(const Ref& r, int64_t l) const { return buf(r).seg(l, static_cast<size_t>(r.part)); }
  int64_t lines(const Buffer& b) const { return b.layout == Layout::Rows ? py : px; }
};

// What a step's kernel leaves for its collective: `outer` blocks of `inner` floats at
// stage.partial, one block per line the allreduce runs along (`along_x`: the partial sums of a
// row's cores are combined), summed (or maximised) into stage.reduced.
struct Reduction {
  int64_t outer = 0, inner = 0;
  bool along_x = false, max = false;
};

int64_t take(int64_t& cursor, int64_t n) {
  const int64_t at = cursor;
  cursor += n;
  return at;
}

float gelu(float x) {
  const float c = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

// out[n] += x * w[n] and out[n] = x * w[n]: the inner loops of every projection (vectorised by
// the compiler).
void axpy(float* __restrict out, const float* __restrict w, float x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) out[e] += x * w[e];
}
void scale(float* __restrict out, const float* __restrict w, float x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) out[e] = x * w[e];
}

// Runs f(line) for every line, on the host's threads when there is enough work to share.
template <typename F>
void for_lines(int64_t lines, int64_t floats_each, F&& f) {
#pragma omp parallel for schedule(static) if (lines * floats_each > (1 << 15))
  for (int64_t l = 0; l < lines; ++l) f(l);
}

}  // namespace

struct MeshDataPlane::State {
  ir::ModelConfig model;
  std::optional<ir::Graph> own_graph;  // when the caller gives none
  const ir::Graph* graph = nullptr;
  compiler::LoweredModel lowered;
  const model::Weights* weights = nullptr;
  int64_t chunk = 1, context = 0, position = 0;
  std::vector<StageArenas> stages;                         // layers, then the head
  std::vector<program::Step> prefill_steps, decode_steps;  // the plan's, run as they are
  std::vector<float> scratch_pool;                         // backs every stage's activation store
  std::vector<float> logits;
  FloatFormat activations = FloatFormat::F32, kv = FloatFormat::F32;
  std::map<std::string, std::pair<int64_t, int64_t>> input_zeros;  // per linear layer: zeros, inputs

  StageArenas& head() { return stages.back(); }

  // A probe, not a transfer: counts the zeros among a linear layer's (rounded) inputs.
  void count_zeros(const std::string& layer, StageArenas& s, const Ref& in, int64_t tokens) {
    auto& [zeros, inputs] = input_zeros[layer];
    const Buffer& b = s.buf(in);
    for (int64_t l = 0; l < s.lines(b); ++l) {
      const int64_t kn = s.seg(in, l).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = s.at(in, l, t);
        for (int64_t k = 0; k < kn; ++k) zeros += round_to_format(x[k], activations) == 0.0f;
      }
      inputs += tokens * kn;
    }
  }

  // --- collectives: the only code that moves values between lines of cores ----------------------

  // The allreduce a plan step names: combines the partial sums of every core along its lines into
  // each core's copy of the result. The kernel's partial sums complete along one axis only; a plan
  // that reduces along the other is refused, and one that names no allreduce leaves the result
  // undefined (NaN). A segmented allreduce (attention's scores, each KV head's over its columns)
  // sums the same values: the cores outside a segment hold exact zeros for its entries.
  void allreduce(StageArenas& s, const program::Step& step, const Reduction& r) {
    const bool along_x = step.pattern == program::Pattern::AllreduceX;
    if (along_x != r.along_x)
      fail("plan step '{}' allreduces along {}, but its kernel's partial sums complete along {}", step.name,
           along_x ? "x" : "y", r.along_x ? "x" : "y");
    float* out = s.scratch + s.reduced;
    const float* in = s.scratch + s.partial;
    std::copy_n(in, r.inner, out);
    for (int64_t l = 1; l < r.outer; ++l) {
      const float* v = in + l * r.inner;
      if (r.max) {
        for (int64_t e = 0; e < r.inner; ++e) out[e] = std::max(out[e], v[e]);
      } else {
        for (int64_t e = 0; e < r.inner; ++e) out[e] += v[e];
      }
    }
  }

  // Stage-to-stage transfer of the residual stream (rows layout), in two halves because the
  // stages' activation stores share host memory: gather the source rows, then deliver every
  // destination row its segment.
  std::vector<float> gather_rows(StageArenas& from, int64_t tokens) {
    const Buffer& b = from.buf(from.output);
    const int64_t d = b.width();
    std::vector<float> rows(static_cast<size_t>(tokens * d));
    for (int64_t j = 0; j < from.py; ++j) {
      const Segment seg = b.seg(j);
      for (int64_t t = 0; t < tokens; ++t) std::copy_n(from.line(b, j, t), seg.size(), rows.data() + t * d + seg.begin);
    }
    return rows;
  }

  // A stage's input rows start undefined (NaN) each pass: its store shares host memory with the
  // other stages', and only a transfer the plan names may fill it.
  void clear_input(StageArenas& s, int64_t tokens) {
    const Buffer& b = s.buf(s.input);
    for (int64_t j = 0; j < s.py; ++j) std::fill_n(s.line(b, j, 0), tokens * b.stride(), kPoison);
  }

  void deliver_rows(StageArenas& to, const float* rows, int64_t tokens) {
    const Buffer& b = to.buf(to.input);
    const int64_t d = b.width();
    for (int64_t j = 0; j < to.py; ++j) {
      const Segment seg = b.seg(j);
      for (int64_t t = 0; t < tokens; ++t) std::copy_n(rows + t * d + seg.begin, seg.size(), to.line(b, j, t));
    }
  }

  // --- kernels --------------------------------------------------------------------------------
  //
  // Each kernel computes, for every core, from what that core holds: its weight tile, its KV
  // cache, and its copy of the segments of its line. The host computes a line's replicated values
  // once (every core of the line would compute the same from the same inputs); values that
  // differ per core (partial sums) are kept per core until a collective combines them.

  // LayerNorm in two steps (mean, then variance and the scaling), RMSNorm in one: each row's sum
  // over its segment, completed down the columns by the plan's allreduce; the last step scales.
  enum class NormSum { Values, Deviations, Squares };
  Reduction norm_sums(StageArenas& s, const StageOp& so, int64_t tokens, NormSum what) {
    const Ref& in = so.in[0];
    const auto d = static_cast<float>(so.op->width);
    const float* mean = s.scratch + s.mean;
    const int64_t lines = s.lines(s.buf(in));
    for (int64_t j = 0; j < lines; ++j) {
      const int64_t n = s.seg(in, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float m = what == NormSum::Deviations ? mean[t] / d : 0.0f;
        const float* x = s.at(in, j, t);
        float sum = 0;
        for (int64_t e = 0; e < n; ++e) sum += what == NormSum::Values ? x[e] : (x[e] - m) * (x[e] - m);
        s.scratch[s.partial + j * tokens + t] = sum;
      }
    }
    return {lines, tokens, s.buf(in).layout == Layout::Cols, false};
  }

  void norm_scale(StageArenas& s, const StageOp& so, int64_t tokens) {
    const bool layer_norm = so.op->op == ir::OpKind::LayerNorm;
    const auto d = static_cast<double>(so.op->width);
    const Buffer& ib = s.buf(so.in[0]);
    for (int64_t j = 0; j < s.lines(ib); ++j) {
      const int64_t n = ib.seg(j).size();
      const float* g = s.weights.data() + so.gamma + j * ib.stride();
      const float* b = so.beta >= 0 ? s.weights.data() + so.beta + j * ib.stride() : nullptr;
      for (int64_t t = 0; t < tokens; ++t) {
        const float mean = layer_norm ? s.scratch[s.mean + t] / static_cast<float>(d) : 0.0f;
        const double squares = s.scratch[s.squares + t];
        const auto inv = static_cast<float>(1.0 / std::sqrt(squares / d + so.eps));
        const float* x = s.at(so.in[0], j, t);
        float* y = s.line(s.buf(so.out), j, t);
        for (int64_t e = 0; e < n; ++e) y[e] = layer_norm ? (x[e] - mean) * inv * g[e] + b[e] : x[e] * inv * g[e];
      }
    }
  }

  // A projection: every core's partial products over its k segment for its n segment, kept per
  // core for the allreduce. From the rows layout the partial sums complete down each column (the
  // output in the cols layout); from the cols layout, along each row.
  Reduction projection(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Ref& in = so.in[0];
    const Buffer& ib = s.buf(in);
    count_zeros(so.op->local, s, in, tokens);
    const bool from_rows = ib.layout == Layout::Rows;
    const int64_t lines = s.lines(ib), across = from_rows ? s.px : s.py;  // lines of the input; cores on each
    const int64_t width = across * so.tile_width;                         // one line's partial outputs
    std::fill_n(s.scratch + s.reduced, tokens * width, kPoison);
    for_lines(lines, so.tile_rows * width, [&](int64_t l) {
      const int64_t kn = s.seg(in, l).size();
      const float* w = s.weights.data() + so.weight + l * so.tile_rows * width;
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = s.scratch + s.partial + (l * tokens + t) * width;
        const float* x = s.at(in, l, t);
        bool written = false;
        for (int64_t k = 0; k < kn; ++k) {
          const float xk = round_to_format(x[k], activations);
          if (xk == 0.0f) continue;  // adding zero products changes nothing
          if (written) {
            axpy(out, w + k * width, xk, width);
          } else {
            scale(out, w + k * width, xk, width);
            written = true;
          }
        }
        if (!written) std::fill_n(out, width, 0.0f);
      }
    });
    return {lines, tokens * width, !from_rows, false};
  }

  // The reduced partial sums plus the bias (a biased projection's), into each line's copy of the
  // output.
  void projection_finish(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& ob = s.buf(so.out);
    const int64_t lines = s.lines(ob);
    const bool biased = so.op->kind == LoweredKind::Projection && so.op->bias;
    for (int64_t l = 0; l < lines; ++l) {
      const float* bias = s.weights.data() + so.bias + l * ob.stride();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* sum = s.scratch + s.reduced + (t * lines + l) * ob.stride();
        float* out = s.line(ob, l, t);
        for (int64_t n = 0; n < ob.stride(); ++n) out[n] = sum[n] + (biased ? bias[n] : 0.0f);
      }
    }
  }

  // RoPE on each input in place. Its operands are stored with each pair of a head next to each
  // other (Order), one core holding both: the pair partner of stored index s is s + 1, or s + group
  // where the queries are group-interleaved.
  void rope(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t half = so.op->head_dim / 2;
    for (const Ref& r : so.in) {
      const Order& order = s.buf(r).orders[static_cast<size_t>(r.part)];
      const int64_t step = order.group;
      for (int64_t l = 0; l < s.lines(s.buf(r)); ++l) {
        const Segment seg = s.seg(r, l);
        for (int64_t t = 0; t < tokens; ++t) {
          const int64_t pos = first_position + t;
          float* v = s.at(r, l, t);
          for (int64_t e = seg.begin; e < seg.end; ++e) {
            const int64_t dim = order.dim(e);
            if (dim % 2 != 0) continue;  // segments hold whole pairs (program/layout.hpp)
            const auto at = static_cast<size_t>(pos * half + dim / 2);
            const float c = so.rope.cos[at], sn = so.rope.sin[at];
            const float x1 = v[e - seg.begin], x2 = v[e - seg.begin + step];
            v[e - seg.begin] = x1 * c + (-x2) * sn;
            v[e - seg.begin + step] = x2 * c + x1 * sn;
          }
        }
      }
    }
  }

  // Attention in four steps, each ending in the plan's allreduce: scores (the new tokens' keys and
  // values appended to the row that owns their position, then each core's partial dot products
  // over its head-dimension segment), the running max, the softmax denominators, the weighted values.
  bool visible(const StageArenas& s, int64_t t, int64_t slot, int64_t j, int64_t first_position, int64_t tokens) const {
    const int64_t key = slot * s.py + j;  // the key's position
    return s.causal ? key <= first_position + t : key < first_position + tokens;
  }
  float* cache(StageArenas& s, int64_t base, int64_t i, int64_t j) {
    return s.weights.data() + base + (j * s.px + i) * s.slots * s.kv_cap;
  }

  Reduction attention_scores(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const Ref &q = so.in[0], &k = so.in[1], &v = so.in[2];
    const Order& order = s.buf(q).orders[static_cast<size_t>(q.part)];
    const int64_t hs = s.heads * s.slots, nc = s.kv_cap, rows = s.py, group = s.group;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t p = first_position + t, j = p % s.py, slot = p / s.py;
      for (int64_t i = 0; i < s.px; ++i) {
        const float *kn = s.at(k, i, t), *vn = s.at(v, i, t);
        float *kc = cache(s, s.k_cache, i, j) + slot * nc, *vc = cache(s, s.v_cache, i, j) + slot * nc;
        for (int64_t e = 0; e < nc; ++e) kc[e] = round_to_format(kn[e], kv), vc[e] = round_to_format(vn[e], kv);
      }
    }
    std::fill_n(s.scratch + s.reduced, tokens * rows * hs, kPoison);
    for_lines(s.px, tokens * rows * hs, [&](int64_t i) {
      const Segment seg = s.seg(q, i);
      float* out = s.scratch + s.partial + i * tokens * rows * hs;
      std::fill_n(out, tokens * rows * hs, 0.0f);
      for (int64_t j = 0; j < rows; ++j) {
        const float* kc = cache(s, s.k_cache, i, j);
        for (int64_t t = 0; t < tokens; ++t) {
          const float* qt = s.at(q, i, t);
          float* sc = out + (t * rows + j) * hs;
          // Each query dimension meets the same dimension of its KV head: (e - begin) / group.
          for (int64_t slot = 0; visible(s, t, slot, j, first_position, tokens); ++slot)
            for (int64_t e = seg.begin; e < seg.end; ++e)
              sc[order.head(e) * s.slots + slot] += qt[e - seg.begin] * kc[slot * nc + (e - seg.begin) / group];
        }
      }
    });
    return {s.px, tokens * rows * hs, true, false};
  }

  // The scores were allreduced along each row: every core of a row holds its row's.
  void keep_scores(StageArenas& s, int64_t tokens) {
    std::copy_n(s.scratch + s.reduced, tokens * s.py * s.heads * s.slots, s.scratch + s.scores);
  }

  Reduction attention_max(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t heads = s.heads, hs = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(so.op->head_dim));
    std::fill_n(s.scratch + s.reduced, tokens * heads, kPoison);
    for (int64_t j = 0; j < s.py; ++j)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t hh = 0; hh < heads; ++hh) {
          const float* sc = s.scratch + s.scores + (t * s.py + j) * hs + hh * s.slots;
          float m = -INFINITY;
          for (int64_t slot = 0; slot < s.slots && visible(s, t, slot, j, first_position, tokens); ++slot)
            m = std::max(m, sc[slot] * scale);
          s.scratch[s.partial + (j * tokens + t) * heads + hh] = m;
        }
    return {s.py, tokens * heads, false, true};
  }

  Reduction attention_sum(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t heads = s.heads, hs = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(so.op->head_dim));
    std::fill_n(s.scratch + s.reduced, tokens * heads, kPoison);
    for (int64_t j = 0; j < s.py; ++j)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t hh = 0; hh < heads; ++hh) {
          const float m = s.scratch[s.max + t * heads + hh];
          float* sc = s.scratch + s.scores + (t * s.py + j) * hs + hh * s.slots;
          float sum = 0;
          for (int64_t slot = 0; slot < s.slots; ++slot) {
            sc[slot] = visible(s, t, slot, j, first_position, tokens) ? std::exp(sc[slot] * scale - m) : 0.0f;
            sum += sc[slot];
          }
          s.scratch[s.partial + (j * tokens + t) * heads + hh] = sum;
        }
    return {s.py, tokens * heads, false, false};
  }

  Reduction attention_values(StageArenas& s, const StageOp& so, int64_t tokens) {
    const int64_t heads = s.heads, hs = heads * s.slots, nc = s.kv_cap, group = s.group;
    const Buffer& ob = s.buf(so.out);
    const Order& order = ob.orders.front();
    const int64_t cap = ob.caps.front(), width = s.px * cap;
    std::fill_n(s.scratch + s.reduced, tokens * width, kPoison);
    for_lines(s.py, tokens * width * s.slots, [&](int64_t j) {
      for (int64_t t = 0; t < tokens; ++t) {
        const float* sc = s.scratch + s.scores + (t * s.py + j) * hs;
        float* out = s.scratch + s.partial + (j * tokens + t) * width;
        std::fill_n(out, width, 0.0f);
        for (int64_t i = 0; i < s.px; ++i) {
          const Segment seg = ob.seg(i);
          const float* vc = cache(s, s.v_cache, i, j);
          for (int64_t e = seg.begin; e < seg.end; ++e) {
            const int64_t hh = order.head(e);
            const float inv = 1.0f / s.scratch[s.sums + t * heads + hh];
            float acc = 0;
            for (int64_t slot = 0; slot < s.slots; ++slot)
              acc += sc[hh * s.slots + slot] * inv * vc[slot * nc + (e - seg.begin) / group];
            out[i * cap + (e - seg.begin)] = acc;
          }
        }
      }
    });
    return {s.py, tokens * width, false, false};
  }

  void values_finish(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& ob = s.buf(so.out);
    for (int64_t i = 0; i < s.px; ++i)
      for (int64_t t = 0; t < tokens; ++t)
        std::copy_n(s.scratch + s.reduced + (t * s.px + i) * ob.stride(), ob.stride(), s.line(ob, i, t));
  }

  // Elementwise ops over each line's segment: a + b, a * b, GELU(a), SiLU(a) or SiLU(a) x b.
  void elementwise(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& ob = s.buf(so.out);
    const LoweredOp& op = *so.op;
    const int64_t lines = s.lines(ob);
    for_lines(lines, tokens * ob.stride() * 8, [&](int64_t l) {
      const int64_t n = ob.seg(l).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = s.at(so.in[0], l, t);
        const float* y = so.in.size() > 1 ? s.at(so.in[1], l, t) : nullptr;
        float* out = s.line(ob, l, t);
        for (int64_t e = 0; e < n; ++e) {
          switch (op.kind) {
            case LoweredKind::Add:
              out[e] = x[e] + y[e];
              break;
            case LoweredKind::Mul:
              out[e] = x[e] * y[e];
              break;
            default:
              out[e] = op.op == ir::OpKind::Gelu ? (so.exact_gelu ? ref::kernels::gelu_exact_value(x[e]) : gelu(x[e]))
                       : op.gated                ? x[e] / (1.0f + std::exp(-x[e])) * y[e]
                                                 : x[e] / (1.0f + std::exp(-x[e]));
          }
        }
      }
    });
  }

  // A mixture of experts (docs/mesh-mapping.md): each core holds its tile of every expert, so a
  // token's experts run on every core and no token moves. The router's logits, split over the
  // columns, are gathered along each row (every core contributes its segment, zeros elsewhere).
  Reduction experts_route(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Ref& router = so.in[1];
    const int64_t n = so.op->experts;
    for (int64_t i = 0; i < s.px; ++i) {
      const Segment seg = s.seg(router, i);
      for (int64_t t = 0; t < tokens; ++t) {
        float* block = s.scratch + s.partial + (i * tokens + t) * n;
        std::fill_n(block, n, 0.0f);
        std::copy_n(s.at(router, i, t), seg.size(), block + seg.begin);
      }
    }
    return {s.px, tokens * n, true, false};
  }

  // Every core picks each token's top_k experts from the gathered logits and their weights, with
  // the reference's routing (ref::kernels::route_token).
  void experts_choose(StageArenas& s, const StageOp& so, int64_t tokens) {
    const int64_t n = so.op->experts, top_k = so.op->top_k;
    std::vector<int64_t> order;
    std::vector<std::pair<int64_t, float>> chosen(static_cast<size_t>(top_k));
    for (int64_t t = 0; t < tokens; ++t) {
      ref::kernels::route_token(s.scratch + s.reduced + t * n, n, top_k, order, chosen.data());
      float* kept = s.scratch + s.routes + t * 2 * top_k;
      for (int64_t j = 0; j < top_k; ++j) {
        kept[2 * j] = static_cast<float>(chosen[static_cast<size_t>(j)].first);
        kept[2 * j + 1] = chosen[static_cast<size_t>(j)].second;
      }
    }
  }

  int64_t chosen_expert(const StageArenas& s, int64_t top_k, int64_t t, int64_t c) const {
    return static_cast<int64_t>(s.scratch[s.routes + (t * top_k + c) * 2]);
  }

  // Each core's partial gate|up products of its tiles of each token's experts, completed down
  // each column (as a projection from the rows layout): [row][token][chosen][column][gate|up].
  Reduction experts_gate_up(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Ref& in = so.in[0];
    const int64_t top_k = so.op->top_k, width = s.px * 2 * so.ff_cap;
    for_lines(s.py, tokens * top_k * so.tile_rows * width, [&](int64_t j) {
      const int64_t kn = s.seg(in, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = s.at(in, j, t);
        for (int64_t c = 0; c < top_k; ++c) {
          const float* w = s.weights.data() + so.weight + chosen_expert(s, top_k, t, c) * so.expert_weight +
                           j * so.tile_rows * width;
          float* out = s.scratch + s.partial + ((j * tokens + t) * top_k + c) * width;
          std::fill_n(out, width, 0.0f);
          for (int64_t k = 0; k < kn; ++k) {
            const float xk = round_to_format(x[k], activations);
            if (xk != 0.0f) axpy(out, w + k * width, xk, width);
          }
        }
      }
    });
    return {s.py, tokens * top_k * width, false, false};
  }

  void experts_gate_up_finish(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& gb = s.buf(so.gate_up);
    const int64_t top_k = so.op->top_k, tile = 2 * so.ff_cap;
    for (int64_t i = 0; i < s.px; ++i)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c = 0; c < top_k; ++c)
          std::copy_n(s.scratch + s.reduced + ((t * top_k + c) * s.px + i) * tile, tile, s.line(gb, i, t) + c * tile);
  }

  // SiLU(gate) x up of each chosen expert, on each column's segment of d_ff.
  void experts_activation(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer &gb = s.buf(so.gate_up), &hb = s.buf(so.hidden);
    const int64_t top_k = so.op->top_k, cap = so.ff_cap;
    for (int64_t i = 0; i < s.px; ++i) {
      const int64_t n = hb.seg(i).size();
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c = 0; c < top_k; ++c) {
          const float* gate = s.line(gb, i, t) + c * 2 * cap;
          const float* up = gate + cap;
          float* h = s.line(hb, i, t) + c * cap;
          for (int64_t e = 0; e < n; ++e) h[e] = gate[e] / (1.0f + std::exp(-gate[e])) * up[e];
        }
    }
  }

  // Each core's partial down products of its tiles of each token's experts, weighted by the
  // router and added on the core, completed along each row: one allreduce carries the mixture.
  Reduction experts_down(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& hb = s.buf(so.hidden);
    const int64_t top_k = so.op->top_k, width = s.py * so.tile_width;
    for_lines(s.px, tokens * top_k * so.ff_cap * width, [&](int64_t i) {
      const int64_t kn = hb.seg(i).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* h = s.line(hb, i, t);
        float* out = s.scratch + s.partial + (i * tokens + t) * width;
        std::fill_n(out, width, 0.0f);
        for (int64_t c = 0; c < top_k; ++c) {
          const float weight = s.scratch[s.routes + (t * top_k + c) * 2 + 1];
          const float* w = s.weights.data() + so.weight_down + chosen_expert(s, top_k, t, c) * so.expert_down +
                           i * so.ff_cap * width;
          for (int64_t k = 0; k < kn; ++k) {
            const float hk = round_to_format(h[c * so.ff_cap + k], activations);
            if (hk != 0.0f) axpy(out, w + k * width, weight * hk, width);
          }
        }
      }
    });
    return {s.px, tokens * width, true, false};
  }

  // --- the plan's steps ---------------------------------------------------------------------------
  //
  // Each step runs its kernel on every core of its stage (local work only), then the collective
  // the plan names for it, then whatever local work consumes the collective's result. A step the
  // plan leaves out is not run, and a collective it does not name does not happen: the values
  // follow the plan that is timed (DESIGN.md, "Locality is enforced").

  // The kernel before the collective; its Reduction is what an allreduce combines.
  Reduction run_kernel(const program::Step& step, StageArenas& s, const StageOp& so, int64_t tokens, int64_t first) {
    const std::string& k = step.kernel;
    if (k == "layernorm.mean") return norm_sums(s, so, tokens, NormSum::Values);
    if (k == "layernorm.variance") return norm_sums(s, so, tokens, NormSum::Deviations);
    if (k == "rmsnorm") return norm_sums(s, so, tokens, NormSum::Squares);
    if (k == "projection") return projection(s, so, tokens);
    if (k == "attention.scores") return attention_scores(s, so, tokens, first);
    if (k == "attention.max") return attention_max(s, so, tokens, first);
    if (k == "attention.sum") return attention_sum(s, so, tokens, first);
    if (k == "attention.values") return attention_values(s, so, tokens);
    if (k == "experts.route") return experts_route(s, so, tokens);
    if (k == "experts.gate_up") return experts_gate_up(s, so, tokens);
    if (k == "experts.down") return experts_down(s, so, tokens);
    if (k == "experts.activation")
      experts_activation(s, so, tokens);
    else if (k == "rope")
      rope(s, so, tokens, first);
    else if (k == "add" || k == "mul" || k == "activation")
      elementwise(s, so, tokens);
    else
      fail("plan step '{}': the mesh data plane has no kernel '{}'", step.name, k);
    return {};
  }

  // The local work that consumes a collective's result within the same step.
  void finish_kernel(const program::Step& step, StageArenas& s, const StageOp& so, int64_t tokens) {
    const std::string& k = step.kernel;
    const auto keep = [&](int64_t at, int64_t count) { std::copy_n(s.scratch + s.reduced, count, s.scratch + at); };
    if (k == "layernorm.mean") keep(s.mean, tokens);
    if (k == "layernorm.variance" || k == "rmsnorm") {
      keep(s.squares, tokens);
      norm_scale(s, so, tokens);
    }
    if (k == "projection" || k == "experts.down") projection_finish(s, so, tokens);
    if (k == "experts.route") experts_choose(s, so, tokens);
    if (k == "experts.gate_up") experts_gate_up_finish(s, so, tokens);
    if (k == "attention.scores") keep_scores(s, tokens);
    if (k == "attention.max") keep(s.max, tokens * s.heads);
    if (k == "attention.sum") keep(s.sums, tokens * s.heads);
    if (k == "attention.values") values_finish(s, so, tokens);
  }

  // Runs one step on `tokens` tokens at positions from `first`. StageTransfer and host steps are
  // run by the pass (forward), which owns the rows in flight between stages.
  void run_step(const program::Step& step, int64_t tokens, int64_t first) {
    StageArenas& s = stages.at(static_cast<size_t>(step.stage));
    const auto found = s.ops.find(step.node);
    if (found == s.ops.end())
      fail("plan step '{}' computes '{}', which stage {} of the model graph does not have", step.name, step.node,
           step.stage);
    const StageOp& so = found->second;
    const Reduction r = run_kernel(step, s, so, tokens, first);
    if (step.pattern == program::Pattern::AllreduceX || step.pattern == program::Pattern::AllreduceY) {
      if (r.outer == 0) fail("plan step '{}' names an allreduce but its kernel leaves nothing to reduce", step.name);
      allreduce(s, step, r);
    }
    finish_kernel(step, s, so, tokens);
  }
};

namespace {

// Binds a stage's ops (a layer's, or the head's) to buffers and weights and fills the weights
// from the checkpoint, in the layouts of docs/mesh-mapping.md. Matrices are indexed W[k][n]
// (input k, output n) whatever the checkpoint's own orientation: GPT-2's Conv1D stores [in, out],
// nn.Linear stores [out, in].
class StageBuilder {
 public:
  // `layer`: the graph layer the stage runs; -1: the head (what follows the last layer).
  StageBuilder(MeshDataPlane::State& st, StageArenas& s, const std::vector<LoweredOp>& ops, int64_t layer)
      : st_(st), s_(s), ops_(ops), g_(*st.graph) {
    int last_layer_node = -1;
    for (size_t i = 0; i < g_.nodes().size(); ++i)
      if (g_.nodes()[i].layer >= 0) last_layer_node = static_cast<int>(i);
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& n = g_.nodes()[i];
      const bool op = n.op != ir::OpKind::Param && n.op != ir::OpKind::Input;
      if (op && (layer >= 0 ? n.layer == layer : n.layer < 0 && static_cast<int>(i) > last_layer_node))
        members_.insert(static_cast<int>(i));
    }
  }

  void build() {
    s_.px = s_.region.width, s_.py = s_.region.height;
    s_.slots = segment_capacity(st_.context, s_.py);
    s_.tokens = s_.is_head ? 1 : st_.chunk;
    s_.input = rows_buffer(residual_width());
    // Per token: the largest partial sums (every core's) and reduced result (a line's) of any
    // step: a projection's, the attention scores', the weighted values', a norm's or softmax's.
    int64_t partial = 0, reduced = 0, core_partial = 0, routes = 0;
    for (const LoweredOp& op : ops_) {
      StageOp so = bind(op);
      if (op.kind == LoweredKind::Projection) {
        const Buffer& ib = s_.buf(so.in[0]);
        const int64_t width = (ib.layout == Layout::Rows ? s_.px : s_.py) * so.tile_width;
        partial = std::max(partial, s_.lines(ib) * width), reduced = std::max(reduced, width);
        core_partial = std::max(core_partial, so.tile_width);
      }
      if (op.kind == LoweredKind::Experts) {
        const int64_t gate_up = op.top_k * s_.px * 2 * so.ff_cap, down = s_.py * so.tile_width;
        partial = std::max({partial, s_.px * op.experts, s_.py * gate_up, s_.px * down});
        reduced = std::max({reduced, op.experts, gate_up, down});
        core_partial = std::max(core_partial, op.top_k * 2 * so.ff_cap);
        routes = std::max(routes, 2 * op.top_k);
      }
      s_.ops[op.name] = std::move(so);
    }
    const int64_t heads = std::max<int64_t>(s_.heads, 1), hs = s_.heads * s_.slots;
    partial = std::max({partial, s_.px * s_.py * hs, s_.py * s_.px * s_.kv_cap, s_.py * heads});
    reduced = std::max({reduced, s_.py * hs, s_.px * s_.kv_cap, heads});
    // A core holds the scores and softmax statistics of its own heads (program::kv_head_columns);
    // the host keeps every head's per row, the other columns' entries zero.
    const int64_t core_heads = std::max<int64_t>(heads_per_core_, 1), core_hs = heads_per_core_ * s_.slots;
    core_partial = std::max({core_partial, core_hs, core_heads});
    s_.output = s_.ops.empty() ? s_.input : s_.ops.at(ops_.back().name).out;
    const int64_t t = s_.tokens;
    s_.partial = take(act_, t * partial), s_.reduced = take(act_, t * reduced);
    s_.scores = take(act_, t * s_.py * hs);
    s_.mean = take(act_, t), s_.squares = take(act_, t);
    s_.max = take(act_, t * heads), s_.sums = take(act_, t * heads);
    s_.routes = take(act_, t * routes);
    core_act_ += t * (core_partial + core_hs + 2 * core_heads + 2 + routes);
    s_.core_floats = core_weights_ + core_act_;
    s_.weights.assign(static_cast<size_t>(cur_), 0.0f);
    scratch_floats_ = act_;
    for (const auto& [name, so] : s_.ops) fill(so);
  }

  int64_t scratch_floats() const { return scratch_floats_; }

 private:
  // The residual stream's width: what the stage's first op reads from outside it.
  int64_t residual_width() const {
    for (const LoweredOp& op : ops_)
      for (int id : op.nodes)
        for (int in : g_.node(id).inputs)
          if (!produced_here(in) && g_.node(in).op != ir::OpKind::Param && g_.node(in).op != ir::OpKind::Input)
            return g_.node(in).type.shape.dims.back();
    fail("a mesh stage of '{}' reads nothing from the stage before it", ops_.front().name);
  }

  bool produced_here(int id) const { return members_.contains(id); }

  int add_buffer(Layout layout, std::vector<int64_t> widths, std::vector<int64_t> caps, std::vector<Order> orders) {
    Buffer b{layout, std::move(widths), std::move(caps), {}, std::move(orders), 0};
    int64_t start = 0;
    for (int64_t cap : b.caps) b.starts.push_back(start), start += cap;
    b.offset = take(act_, s_.lines(b) * s_.tokens * b.stride());
    core_act_ += s_.tokens * b.stride();
    s_.buffers.push_back(b);
    return static_cast<int>(s_.buffers.size()) - 1;
  }

  int rows_buffer(int64_t width) {
    return add_buffer(Layout::Rows, {width}, {segment_capacity(width, s_.py)}, {Order{}});
  }

  // A projection's output in the cols layout, its parts split as program/layout.hpp says (what
  // the compiler sized): attention's queries and keys/values by KV groups, others with the model
  // dimension's pairs together.
  int projection_buffer(const LoweredOp& op) {
    std::vector<int64_t> caps;
    std::vector<Order> orders;
    const int64_t group = op.attention_group;
    for (size_t p = 0; p < op.part_widths.size(); ++p) {
      const int64_t w = op.part_widths[p];
      const PartLayout part = part_layout(op, p);
      switch (op.part_roles[p]) {
        case compiler::PartRole::Query:
          caps.push_back(program::query_capacity(w, s_.px, group));
          orders.push_back({part.hd, part.pairs, group});
          break;
        case compiler::PartRole::KeyValue:
          caps.push_back(program::key_value_capacity(w * group, s_.px, group));
          orders.push_back({part.hd, part.pairs, 1});
          break;
        case compiler::PartRole::Other:
          caps.push_back(segment_capacity(w, s_.px, w == residual_width() ? 2 : 1));
          orders.push_back(part.pairs ? Order{part.hd, true, 1} : Order{});
          break;
      }
    }
    return add_buffer(Layout::Cols, op.part_widths, std::move(caps), std::move(orders));
  }

  // Weights for every core of the stage: `per_core` floats each, stored `copies` times (once per
  // line where the line's cores hold the same).
  int64_t add_weights(int64_t per_core, int64_t copies) {
    core_weights_ += per_core;
    return take(cur_, per_core * copies);
  }

  Ref resolve(int id) const {
    if (const auto it = refs_.find(id); it != refs_.end()) return it->second;
    if (produced_here(id))
      fail(
          "graph node %{} ('{}') has no place on the mesh (a slice that is not one of its projection's equal "
          "parts, or an op the mesh data plane cannot run)",
          id, g_.node(id).name);
    return {s_.input, 0};
  }

  StageOp bind(const LoweredOp& op) {
    StageOp so;
    so.op = &op;
    const ir::Node& first = g_.node(op.nodes.front());
    const auto layout_of = [&](const Ref& r) { return s_.buf(r).layout; };
    switch (op.kind) {
      case LoweredKind::Embedding:
        fail("'{}': a mesh stage has no embedding lookup (tokens are embedded on the host)", op.name);
      case LoweredKind::Experts: {
        so.in = {resolve(first.inputs[0]), resolve(first.inputs[1])};
        if (layout_of(so.in[0]) != Layout::Rows || layout_of(so.in[1]) != Layout::Cols ||
            !(order_of(so.in[1]) == Order{}))
          fail("'{}': the mesh routes a rows-layout input by its router projection's logits", op.name);
        const auto top_k = static_cast<size_t>(op.top_k);
        so.ff_cap = segment_capacity(op.n, s_.px, op.n == residual_width() ? 2 : 1);
        so.gate_up = add_buffer(Layout::Cols, std::vector<int64_t>(2 * top_k, op.n),
                                std::vector<int64_t>(2 * top_k, so.ff_cap), std::vector<Order>(2 * top_k));
        so.hidden = add_buffer(Layout::Cols, std::vector<int64_t>(top_k, op.n), std::vector<int64_t>(top_k, so.ff_cap),
                               std::vector<Order>(top_k));
        so.out = rows_buffer(op.k);
        so.tile_rows = s_.buf(so.in[0]).stride(), so.tile_width = s_.buf(so.out).stride();
        // [expert][row][k][column][gate|up] and [expert][column][k][row][n].
        so.expert_weight = s_.py * so.tile_rows * s_.px * 2 * so.ff_cap;
        so.expert_down = s_.px * so.ff_cap * s_.py * so.tile_width;
        so.weight = add_weights(op.experts * so.tile_rows * 2 * so.ff_cap, s_.px * s_.py);
        so.weight_down = add_weights(op.experts * so.ff_cap * so.tile_width, s_.px * s_.py);
        refs_[op.nodes.back()] = {so.out, 0};
        break;
      }
      case LoweredKind::Norm: {
        // The residual stream (rows layout), or a split tensor in the graph's own order (cols).
        so.in = {resolve(first.inputs[0])};
        const Buffer& ib = s_.buf(so.in[0]);
        if (ib.layout == Layout::Cols && (ib.widths.size() != 1 || !(order_of(so.in[0]) == Order{})))
          fail("'{}': the mesh normalises a whole vector stored in order", op.name);
        // (Adding the output buffer may move the input's.)
        const int64_t stride = ib.stride(), lines = s_.lines(ib);
        so.out = ib.layout == Layout::Rows ? rows_buffer(op.width)
                                           : add_buffer(Layout::Cols, {op.width}, {ib.caps.front()}, {Order{}});
        so.eps = static_cast<float>(first.float_attr("eps"));
        so.gamma = add_weights(stride, lines);
        if (op.vectors == 2) so.beta = add_weights(stride, lines);
        refs_[op.nodes.front()] = {so.out, 0};
        break;
      }
      case LoweredKind::Projection: {
        so.in = {resolve(first.inputs[0])};
        const Buffer& ib = s_.buf(so.in[0]);
        if ((ib.layout == Layout::Cols) != op.split_input)
          fail("'{}': its input's layout does not match the plan's split", op.name);
        if (ib.layout == Layout::Rows) {
          so.out = projection_buffer(op);
        } else {
          so.in_order = order_of(so.in[0]);
          so.out = rows_buffer(op.n);
        }
        const Buffer& ob = s_.buf(so.out);
        so.tile_rows = s_.buf(so.in[0]).stride(), so.tile_width = ob.stride();
        so.weight = add_weights(so.tile_rows * so.tile_width, s_.px * s_.py);
        if (op.bias) so.bias = add_weights(so.tile_width, s_.lines(ob));
        bind_parts(op, so.out);
        break;
      }
      case LoweredKind::Rope:
        for (int id : op.nodes) {
          so.in.push_back(resolve(g_.node(id).inputs[0]));
          const Order order = order_of(so.in.back());
          if (layout_of(so.in.back()) != Layout::Cols || !order.pairs || order.head_dim != first.int_attr("head_dim"))
            fail("'{}': the mesh rotates only a projection's output it stores pair-adjacent", op.name);
          refs_[id] = so.in.back();  // rotated in place
        }
        so.rope = ref::rope_table(first, st_.context);
        break;
      case LoweredKind::Attention: {
        so.in = {resolve(first.inputs[0]), resolve(first.inputs[1]), resolve(first.inputs[2])};
        const int64_t q_width = op.heads * op.head_dim, group = op.heads / op.kv_heads;
        const Order q = order_of(so.in[0]), k = order_of(so.in[1]), v = order_of(so.in[2]);
        const bool placed = layout_of(so.in[0]) == Layout::Cols && q.group == group && q.head_dim == op.head_dim &&
                            k.group == 1 && k.pairs == q.pairs && k.head_dim == op.head_dim && v.group == 1 &&
                            !v.pairs &&
                            s_.buf(so.in[1]).caps[static_cast<size_t>(so.in[1].part)] * group ==
                                s_.buf(so.in[0]).caps[static_cast<size_t>(so.in[0].part)];
        if (!placed)
          fail("'{}': the mesh needs q, k and v from one projection, split over the columns by KV groups", op.name);
        if (s_.heads) fail("'{}': a mesh stage holds one attention", op.name);
        so.out = add_buffer(Layout::Cols, {q_width}, {program::query_capacity(q_width, s_.px, group)},
                            {Order{op.head_dim, false, group}});
        s_.heads = op.heads, s_.group = group, s_.causal = op.causal;
        heads_per_core_ = program::heads_per_column(q_width, s_.px, group, op.head_dim);
        s_.kv_cap = s_.buf(so.in[1]).caps[static_cast<size_t>(so.in[1].part)];
        s_.k_cache = add_weights(s_.slots * s_.kv_cap, s_.px * s_.py);
        s_.v_cache = add_weights(s_.slots * s_.kv_cap, s_.px * s_.py);
        refs_[op.nodes.front()] = {so.out, 0};
        break;
      }
      case LoweredKind::Add:
      case LoweredKind::Mul:
      case LoweredKind::Activation: {
        for (int in : first.inputs) so.in.push_back(resolve(in));
        if (op.gated) {
          const ir::Node& mul = g_.node(op.nodes.back());
          so.in.push_back(resolve(mul.inputs[0] == op.nodes.front() ? mul.inputs[1] : mul.inputs[0]));
        }
        const Ref& a = so.in[0];
        const int64_t cap = s_.buf(a).caps[static_cast<size_t>(a.part)];
        for (const Ref& r : so.in)
          if (layout_of(r) != layout_of(a) || s_.buf(r).caps[static_cast<size_t>(r.part)] != cap ||
              !(order_of(r) == order_of(a)))
            fail("'{}': its inputs lie in different layouts on the mesh", op.name);
        so.exact_gelu = op.op == ir::OpKind::Gelu && ir::is_exact_gelu(first);
        // The residual stream is updated in place (the value it held is not read again).
        const bool in_place = op.kind == LoweredKind::Add && a.buffer == s_.input && last_use(op, s_.input);
        so.out = in_place ? a.buffer : add_buffer(layout_of(a), {op.width}, {cap}, {order_of(a)});
        refs_[op.nodes.back()] = {so.out, 0};
        break;
      }
    }
    return so;
  }

  // Whether no op after `op` reads the value buffer `b` holds now (a value already computed, or
  // the stage's input).
  bool last_use(const LoweredOp& op, int b) const {
    const auto it = std::find_if(ops_.begin(), ops_.end(), [&](const LoweredOp& o) { return &o == &op; });
    for (auto later = std::next(it); later != ops_.end(); ++later)
      for (int id : later->nodes)
        for (int in : g_.node(id).inputs) {
          const ir::OpKind kind = g_.node(in).op;
          if (kind == ir::OpKind::Param || kind == ir::OpKind::Input) continue;
          if (const auto ref = refs_.find(in);
              ref != refs_.end() ? ref->second.buffer == b : !produced_here(in) && b == s_.input)
            return false;
        }
    return true;
  }

  // A projection's outputs: each fused node is a part; a lone node read through slices has the
  // slices as its parts.
  void bind_parts(const LoweredOp& op, int out) {
    refs_[op.nodes.front()] = {out, 0};
    if (op.nodes.size() > 1) {
      for (size_t p = 0; p < op.nodes.size(); ++p) refs_[op.nodes[p]] = {out, static_cast<int64_t>(p)};
      return;
    }
    for (const auto& [slice, part] : slices(op)) refs_[slice] = {out, part};
  }

  std::vector<std::pair<int, int64_t>> slices(const LoweredOp& op) const {
    std::vector<std::pair<int, int64_t>> out;
    if (op.part_widths.size() < 2) return out;
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& n = g_.nodes()[i];
      if (n.op == ir::OpKind::SliceCols && n.inputs[0] == op.nodes.front())
        out.emplace_back(static_cast<int>(i), n.int_attr("start") / n.int_attr("size"));
    }
    return out;
  }

  Order order_of(const Ref& r) const { return s_.buf(r).orders.at(static_cast<size_t>(r.part)); }

  // How a projection's part is stored: which graph value it is (its node, or its slice), where it
  // starts among the node's columns, and how the mesh rearranges it.
  struct PartLayout {
    int node = -1;
    int64_t offset = 0;
    bool pairs = false;  // RoPE reads it: head dimensions stored pair-adjacent
    int64_t hd = 0;      // the head dimension of the RoPE or attention that reads it
  };

  PartLayout part_layout(const LoweredOp& op, size_t part) const {
    PartLayout pl;
    pl.node = op.nodes.size() > 1 ? op.nodes[part] : op.nodes.front();
    int value = pl.node;
    if (op.nodes.size() == 1 && op.part_widths.size() > 1)
      for (const auto& [slice, p] : slices(op))
        if (p == static_cast<int64_t>(part)) value = slice, pl.offset = g_.node(slice).int_attr("start");
    // Follow the part through RoPE to the attention that reads it.
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& user = g_.nodes()[i];
      if (std::find(user.inputs.begin(), user.inputs.end(), value) == user.inputs.end()) continue;
      if (user.op == ir::OpKind::Rope) {
        pl.pairs = true, pl.hd = user.int_attr("head_dim");
        value = static_cast<int>(i);  // its users come later in the graph
      } else if (user.op == ir::OpKind::Attention) {
        pl.hd = user.int_attr("head_dim");
      }
    }
    return pl;
  }

  // A part's weights in the checkpoint.
  struct PartSource : PartLayout {
    const float* weight = nullptr;
    const float* bias = nullptr;
    int64_t k = 0, n_total = 0;  // the weight's k, its node's output count
    bool linear = false;
  };

  const float* param(const std::string& name) const {
    const model::Tensor* t = st_.weights->find(name);
    if (!t) fail("weights are missing '{}', which the plan for {} needs", name, st_.model.name);
    return t->values.data();
  }

  PartSource part_source(const LoweredOp& op, size_t part) const {
    PartSource src;
    static_cast<PartLayout&>(src) = part_layout(op, part);
    const ir::Node& mm = g_.node(src.node);
    src.weight = param(g_.node(mm.inputs[1]).name);
    if (mm.inputs.size() == 3) src.bias = param(g_.node(mm.inputs[2]).name);
    src.linear = mm.op == ir::OpKind::Linear, src.k = op.k;
    src.n_total = mm.type.shape.dims.back();
    return src;
  }

  static float at(const PartSource& src, int64_t k, int64_t column) {
    const int64_t c = src.offset + column;
    return src.linear ? src.weight[c * src.k + k] : src.weight[k * src.n_total + c];
  }

  void fill(const StageOp& so) {
    const LoweredOp& op = *so.op;
    float* w = s_.weights.data();
    if (op.kind == LoweredKind::Norm) {
      const ir::Node& n = g_.node(op.nodes.front());
      const float* gamma = param(g_.node(n.inputs[1]).name);
      const float* beta = op.vectors == 2 ? param(g_.node(n.inputs[2]).name) : nullptr;
      const Buffer& ib = s_.buf(so.in[0]);
      for (int64_t j = 0; j < s_.lines(ib); ++j) {
        const Segment rows = ib.seg(j);
        std::copy(gamma + rows.begin, gamma + rows.end, w + so.gamma + j * ib.stride());
        if (beta) std::copy(beta + rows.begin, beta + rows.end, w + so.beta + j * ib.stride());
      }
      return;
    }
    if (op.kind == LoweredKind::Experts) fill_experts(so);
    if (op.kind != LoweredKind::Projection) return;
    const Buffer& ob = s_.buf(so.out);
    const Ref& in = so.in[0];
    std::vector<PartSource> sources;
    for (size_t p = 0; p < ob.widths.size(); ++p) sources.push_back(part_source(op, p));
    const int64_t in_lines = s_.lines(s_.buf(in)), out_lines = s_.lines(ob);
    const int64_t width = out_lines * so.tile_width;  // one input line's tiles side by side
    for (int64_t l = 0; l < in_lines; ++l) {
      const Segment ks = s_.seg(in, l);
      for (int64_t o = 0; o < out_lines; ++o) {
        for (size_t p = 0; p < ob.widths.size(); ++p) {
          const PartSource& src = sources[p];
          const Segment ns = ob.seg(o, p);
          for (int64_t n = ns.begin; n < ns.end; ++n) {
            const int64_t c = ob.orders[p].graph_index(n);  // stored column -> the part's own column
            const int64_t col = o * so.tile_width + ob.starts[p] + (n - ns.begin);
            for (int64_t k = ks.begin; k < ks.end; ++k)
              w[so.weight + (l * so.tile_rows + (k - ks.begin)) * width + col] = at(src, so.in_order.graph_index(k), c);
            if (src.bias && l == 0)
              w[so.bias + o * ob.stride() + ob.starts[p] + (n - ns.begin)] = src.bias[src.offset + c];
          }
        }
      }
    }
  }

  // Every expert's w1 | w3 ([d_ff, d]) and w2 ([d, d_ff]) tiles, in the layouts bind() gives them.
  void fill_experts(const StageOp& so) {
    const LoweredOp& op = *so.op;
    const ir::Node& node = g_.node(op.nodes.front());
    const int64_t d = op.k, f = op.n, cap = so.ff_cap, width = s_.px * 2 * cap, width_down = s_.py * so.tile_width;
    const Buffer &ib = s_.buf(so.in[0]), &hb = s_.buf(so.hidden), &ob = s_.buf(so.out);
    for (int64_t e = 0; e < op.experts; ++e) {
      const auto weight = [&](int64_t i) {
        return param(g_.node(node.inputs[static_cast<size_t>(2 + 3 * e + i)]).name);
      };
      const float *w1 = weight(0), *w3 = weight(1), *w2 = weight(2);
      float* gate_up = s_.weights.data() + so.weight + e * so.expert_weight;
      for (int64_t j = 0; j < s_.py; ++j)
        for (int64_t k = ib.seg(j).begin; k < ib.seg(j).end; ++k)
          for (int64_t i = 0; i < s_.px; ++i)
            for (int64_t c = hb.seg(i).begin; c < hb.seg(i).end; ++c) {
              float* at =
                  gate_up + (j * so.tile_rows + k - ib.seg(j).begin) * width + i * 2 * cap + c - hb.seg(i).begin;
              at[0] = w1[c * d + k], at[cap] = w3[c * d + k];
            }
      float* down = s_.weights.data() + so.weight_down + e * so.expert_down;
      for (int64_t i = 0; i < s_.px; ++i)
        for (int64_t c = hb.seg(i).begin; c < hb.seg(i).end; ++c)
          for (int64_t j = 0; j < s_.py; ++j)
            for (int64_t n = ob.seg(j).begin; n < ob.seg(j).end; ++n)
              down[(i * cap + c - hb.seg(i).begin) * width_down + j * so.tile_width + n - ob.seg(j).begin] =
                  w2[n * f + c];
    }
  }

  MeshDataPlane::State& st_;
  StageArenas& s_;
  const std::vector<LoweredOp>& ops_;
  const ir::Graph& g_;
  std::map<int, Ref> refs_;
  std::set<int> members_;                    // the graph's op nodes of this stage
  int64_t cur_ = 0, act_ = 0;                // host floats: weights, activations
  int64_t core_weights_ = 0, core_act_ = 0;  // one core's floats
  int64_t heads_per_core_ = 0;               // query heads whose dimensions a core holds
  int64_t scratch_floats_ = 0;
};

}  // namespace

MeshDataPlane::MeshDataPlane(const program::Program& plan, const model::Weights& weights, const ir::Graph* graph)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.model = ir::parse_model_config(plan.model_yaml, plan.model_origin);
  if (!graph) graph = &st.own_graph.emplace(ir::build_model_graph(st.model));
  st.graph = graph;
  st.lowered = compiler::lower_graph(*st.graph);
  st.activations = parse_float_format(plan.precision.activations);
  st.kv = parse_float_format(plan.precision.kv);
  if (plan.batch != 1 || !plan.embedding || !plan.lm_head)
    fail(
        "{}: values are computed for a whole model serving one request; this plan is a pipeline stage or holds {} "
        "requests (run it timing-only: --no-numerics)",
        plan.model_origin, plan.batch);
  if (plan.stages.size() != st.lowered.layers.size() + 1)
    fail("{}: the plan has {} stages but {} has {} layers + the LM head", plan.model_origin, plan.stages.size(),
         st.model.name, st.lowered.layers.size());
  st.weights = &weights;
  st.prefill_steps = plan.prefill, st.decode_steps = plan.decode;
  st.chunk = plan.prefill_chunk_tokens;
  st.context = plan.max_context;
  st.stages.resize(plan.stages.size());
  int64_t pool = 0;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    StageArenas& stage = st.stages[s];
    stage.region = plan.stages[s].region;
    stage.is_head = s + 1 == plan.stages.size();
    StageBuilder builder(st, stage, stage.is_head ? st.lowered.head : st.lowered.layers[s].ops,
                         stage.is_head ? -1 : static_cast<int64_t>(s));
    builder.build();
    pool = std::max(pool, builder.scratch_floats());
  }
  st.scratch_pool.assign(static_cast<size_t>(pool), 0.0f);
  for (auto& s : st.stages) s.scratch = st.scratch_pool.data();
}

MeshDataPlane::~MeshDataPlane() = default;

std::map<std::string, double> MeshDataPlane::activation_density() const {
  std::map<std::string, double> out;
  for (const auto& [layer, counts] : state_->input_zeros)
    if (counts.second > 0) out[layer] = 1.0 - static_cast<double>(counts.first) / static_cast<double>(counts.second);
  return out;
}

int64_t MeshDataPlane::position() const { return state_->position; }
int64_t MeshDataPlane::max_context() const { return state_->context; }
int64_t MeshDataPlane::vocab_size() const { return state_->model.vocab_size; }
void MeshDataPlane::reset() { state_->position = 0; }

int64_t MeshDataPlane::cores_allocated() const {
  int64_t n = 0;
  for (const auto& s : state_->stages) n += s.px * s.py;
  return n;
}

int64_t MeshDataPlane::largest_arena_bytes() const {
  int64_t n = 0;
  for (const auto& s : state_->stages) n = std::max(n, s.core_floats * 4);
  return n;
}

std::span<const float> MeshDataPlane::forward(std::span<const int32_t> tokens, bool last_only) {
  State& st = *state_;
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = st.model.vocab_size;
  if (n == 0) fail("forward() needs at least one token");
  if (st.position + n > st.context)
    fail("context overflow: {} cached + {} new tokens exceed the plan's context of {} tokens", st.position, n,
         st.context);
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab) fail("token id {} is outside the vocabulary (0..{})", t, vocab - 1);
  st.logits.assign(static_cast<size_t>((last_only ? 1 : n) * vocab), 0.0f);
  // The host's embedding lookups: each table indexed by the tokens, by their positions, or (token
  // types: one segment) by 0, summed in the graph's order; then the embedding's norm, if any
  // (BERT's), also on the host, in the reference's arithmetic.
  struct Lookup {
    const float* table;
    int64_t width;
    enum class By { Token, Position, Zero } by;
  };
  // The checkpoint values of a node's `input` (an embedding table, a norm vector).
  const auto weights_of = [&](const ir::Node& node, size_t input) -> const float* {
    const std::string& name = st.graph->node(node.inputs[input]).name;
    const model::Tensor* t = st.weights->find(name);
    if (!t) fail("weights are missing '{}'", name);
    return t->values.data();
  };
  std::vector<Lookup> lookups;
  const ir::Node* embedding_norm = nullptr;
  for (const auto& op : st.lowered.embedding)
    for (int id : op.nodes) {
      const ir::Node& node = st.graph->node(id);
      if (op.kind == LoweredKind::Norm) {
        if (embedding_norm) fail("'{}': the host applies one norm to the embeddings", op.name);
        embedding_norm = &node;
      }
      if (node.op != ir::OpKind::Embedding) continue;
      const ir::Node &table = st.graph->node(node.inputs[0]), &ids = st.graph->node(node.inputs[1]);
      lookups.push_back({weights_of(node, 0), table.type.shape.dims[1],
                         ids.name == "positions"     ? Lookup::By::Position
                         : ids.name == "token_types" ? Lookup::By::Zero
                                                     : Lookup::By::Token});
    }
  const auto head_stage = static_cast<int32_t>(st.stages.size() - 1);
  // A whole prompt is prefilled chunk by chunk with the plan's prefill steps; one more token with
  // its decode steps.
  const std::vector<program::Step>& steps = n == 1 && st.position > 0 ? st.decode_steps : st.prefill_steps;
  for (int64_t begin = 0; begin < n; begin += st.chunk) {
    const int64_t count = std::min(st.chunk, n - begin), first = st.position + begin;
    const bool last_chunk = begin + count == n;
    // Rows in flight between stages, delivered when the destination stage starts.
    std::map<int32_t, std::vector<float>> in_flight;
    int32_t running = -1;
    for (const program::Step& step : steps) {
      if (step.stage == head_stage || (step.last_chunk_only && !last_chunk)) continue;
      if (step.stage != running) {
        running = step.stage;
        StageArenas& s = st.stages.at(static_cast<size_t>(running));
        st.clear_input(s, count);
        if (const auto rows = in_flight.find(running); rows != in_flight.end()) {
          st.deliver_rows(s, rows->second.data(), count);
          in_flight.erase(rows);
        }
      }
      if (step.pattern == program::Pattern::HostIn) {
        // The host looks up the embeddings and sends each row of the stage its segment.
        const int64_t d = st.stages.at(static_cast<size_t>(step.stage)).buffers.front().width();
        std::vector<float> rows(static_cast<size_t>(count * d), 0.0f);
        for (int64_t t = 0; t < count; ++t)
          for (const Lookup& l : lookups) {
            const int64_t id = l.by == Lookup::By::Position ? first + t
                               : l.by == Lookup::By::Zero   ? 0
                                                            : tokens[static_cast<size_t>(begin + t)];
            for (int64_t e = 0; e < d; ++e) rows[static_cast<size_t>(t * d + e)] += l.table[id * l.width + e];
          }
        if (embedding_norm)
          ref::kernels::norm(rows.data(), weights_of(*embedding_norm, 1),
                             embedding_norm->op == ir::OpKind::LayerNorm ? weights_of(*embedding_norm, 2) : nullptr,
                             embedding_norm->float_attr("eps"), count, d, rows.data());
        st.deliver_rows(st.stages.at(static_cast<size_t>(step.stage)), rows.data(), count);
      } else if (step.pattern == program::Pattern::StageTransfer) {
        in_flight[step.to_stage] = st.gather_rows(st.stages.at(static_cast<size_t>(step.stage)), count);
      } else {
        st.run_step(step, count, first);
      }
    }
    // The LM head's stage holds one token at a time: the prompt's last, or every one when asked.
    const int64_t d = st.head().buffers.front().width();
    for (int64_t t = 0; t < count; ++t) {
      if (last_only && begin + t != n - 1) continue;
      st.clear_input(st.head(), 1);
      if (const auto rows = in_flight.find(head_stage); rows != in_flight.end())
        st.deliver_rows(st.head(), rows->second.data() + t * d, 1);
      float* row = st.logits.data() + (last_only ? 0 : (begin + t) * vocab);
      for (const program::Step& step : steps) {
        if (step.stage != head_stage) continue;
        if (step.pattern == program::Pattern::HostOut) {
          // The host gathers the logits from the edge of the stage: each column's segment (cols
          // layout: an LM head reading the residual stream), or each row's (rows: BERT's decoder,
          // reading a split tensor).
          StageArenas& s = st.head();
          const Buffer& b = s.buf(s.output);
          for (int64_t i = 0; i < s.lines(b); ++i) {
            const Segment seg = b.seg(i);
            std::copy_n(s.line(b, i, 0), seg.size(), row + seg.begin);
          }
        } else {
          st.run_step(step, 1, first + t);
        }
      }
    }
  }
  st.position += n;
  return st.logits;
}

}  // namespace tessera::sim
