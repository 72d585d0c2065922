#include "tessera/target/mesh2d/mesh_numerics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"
#include "tessera/compiler/lowering.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/target/mesh2d/layout.hpp"

namespace tessera::sim {

namespace {

using compiler::LoweredKind;
using compiler::LoweredOp;
using program::Segment;
using program::segment;
using program::segment_capacity;

// A core's weight tile stored compressed, row by row: the non-zeros of row k are
// (column[e], value[e]) for e in [row_start[k], row_start[k + 1]). Used when the arch skips the
// pruned zeros, so a kernel multiplies only what is stored.
struct SparseTile {
  std::vector<int32_t> row_start, column;
  std::vector<float> value;
};

// The two layouts of docs/mesh-mapping.md: rows (a vector split over the region's rows,
// replicated along each row) and cols (split over the columns, replicated down each column).
enum class Layout { Rows, Cols };

// A tensor of a stage in every core's activation area: `parts` vectors of `part_width` side by
// side (q|k|v), each split over the lines of its layout in segments of `cap` (cols: a multiple of
// `align`, so RoPE's pairs stay on one core).
struct Buffer {
  Layout layout = Layout::Rows;
  int64_t parts = 1, part_width = 0, align = 1, cap = 0;
  int64_t offset = 0;
  int64_t stride() const { return parts * cap; }  // floats per token on a core
  // The elements of each part core (i, j) holds.
  Segment seg(int64_t px, int64_t py, int64_t i, int64_t j) const {
    return layout == Layout::Rows ? segment(part_width, py, j) : segment(part_width, px, i, align);
  }
};

// Where a graph node's value lives: part `part` of a stage buffer.
struct Ref {
  int buffer = -1;
  int64_t part = 0;
};

// A lowered op bound to its stage's buffers and resident tiles.
struct StageOp {
  const LoweredOp* op = nullptr;
  std::vector<Ref> in;
  int out = -1;
  int64_t weight = 0, bias = 0, tile_rows = 0, tile_width = 0;  // projection: W[k][n] tile, bias
  int64_t gamma = 0, beta = -1;                                  // norm vectors (beta: LayerNorm)
  float eps = 0;
  ref::RopeTable rope;
};

// One stage's cores and where each buffer sits in every core's arena (all cores of a stage share
// one layout, sized for the largest segment).
struct StageArenas {
  arch::Region region;
  int64_t px = 0, py = 0;
  bool is_head = false;
  int64_t slots = 0, tokens = 0;
  std::vector<Buffer> buffers;
  int input = -1, output = -1;      // the rows the stage receives, and what it hands on
  std::map<std::string, StageOp> ops;  // by lowered op name (a plan step's `node`)
  // The KV cache (one attention per stage), stored per query dimension; scratch for partial
  // sums, attention scores and statistics.
  int64_t k_cache = 0, v_cache = 0, kv_cap = 0, heads = 0;
  int64_t part = 0, scores = 0, stats = 0;
  int64_t weight_floats = 0, scratch_floats = 0;
  // Per core: weights and KV cache, which persist for the whole run.
  std::vector<std::vector<float>> resident;           // by core index j * px + i
  std::vector<std::map<int64_t, SparseTile>> sparse;  // by core index, then weight offset (when skipping)
  // Per core: activations, which live only while the stage runs. Stages run one after another,
  // so all stages' activation areas share one host buffer (each core still has its own area).
  float* scratch = nullptr;

  float* weights(int64_t i, int64_t j) { return resident[static_cast<size_t>(j * px + i)].data(); }
  float* arena(int64_t i, int64_t j) { return scratch + (j * px + i) * scratch_floats; }
  const Buffer& buf(const Ref& r) const { return buffers.at(static_cast<size_t>(r.buffer)); }
  // Offset of token t of part `part` of a ref's buffer in an arena.
  int64_t at(const Ref& r, int64_t t) const {
    const Buffer& b = buf(r);
    return b.offset + t * b.stride() + r.part * b.cap;
  }
};

// What a step's kernel leaves for its collective: `count` floats at `offset` in every core's
// activation area, summed (or, with max, maximised) by the allreduce the plan names.
struct Reduction {
  int64_t offset = 0, count = 0;
  bool max = false;
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

}  // namespace

struct MeshDataPlane::State {
  ir::ModelConfig model;
  ir::Graph graph;
  compiler::LoweredModel lowered;
  const model::Weights* weights = nullptr;
  int64_t chunk = 1, context = 0, position = 0;
  std::vector<StageArenas> stages;                         // layers, then the head
  std::vector<program::Step> prefill_steps, decode_steps;  // the plan's, run as they are
  std::vector<float> scratch_pool;                         // backs every stage's activation areas (see StageArenas)
  std::vector<float> logits;
  FloatFormat activations = FloatFormat::F32, kv = FloatFormat::F32;
  bool skip_weight_zeros = false, skip_zero_activations = false;
  std::map<std::string, std::pair<int64_t, int64_t>> input_zeros;  // per linear layer: zeros, inputs

  StageArenas& head() { return stages.back(); }

  // A probe, not a transfer: counts the zeros among a linear layer's (rounded) inputs, reading the
  // one copy of each segment held by the first line of cores.
  void count_zeros(const std::string& layer, StageArenas& s, const Ref& in, int64_t tokens) {
    auto& [zeros, inputs] = input_zeros[layer];
    const Buffer& b = s.buf(in);
    const bool rows = b.layout == Layout::Rows;
    const int64_t lines = rows ? s.py : s.px;
    for (int64_t l = 0; l < lines; ++l) {
      const float* a = rows ? s.arena(0, l) : s.arena(l, 0);
      const int64_t kn = rows ? b.seg(s.px, s.py, 0, l).size() : b.seg(s.px, s.py, l, 0).size();
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t k = 0; k < kn; ++k) zeros += round_to_format(a[s.at(in, t) + k], activations) == 0.0f;
      inputs += tokens * kn;
    }
  }

  // out[n] += x * W[k][n] over row k of a core's weight tile at `weight` (`width` columns, or the
  // compressed non-zeros), skipping the whole row when the arch skips zero activations.
  void accumulate_row(const StageArenas& s, int64_t core, const float* w, int64_t weight, int64_t width, int64_t k,
                      float x, float* out, int64_t n_begin, int64_t n_end) const {
    if (skip_zero_activations && x == 0.0f) return;
    if (skip_weight_zeros) {
      const SparseTile& tile = s.sparse[static_cast<size_t>(core)].at(weight);
      for (int32_t e = tile.row_start[static_cast<size_t>(k)]; e < tile.row_start[static_cast<size_t>(k) + 1]; ++e)
        out[tile.column[static_cast<size_t>(e)]] += x * tile.value[static_cast<size_t>(e)];
      return;
    }
    const float* row = w + weight + k * width;
    for (int64_t n = n_begin; n < n_end; ++n) out[n] += x * row[n];
  }

  // --- collectives: the only code that touches more than one core's arena -----------------------

  // Sums (or takes the max of) `count` floats at `offset` over every line of the stage and leaves
  // the result in each core of the line. along_x: the lines are rows.
  void allreduce(StageArenas& s, bool along_x, int64_t offset, int64_t count, bool max) {
    const int64_t lines = along_x ? s.py : s.px, length = along_x ? s.px : s.py;
    std::vector<float> acc(static_cast<size_t>(count));
    for (int64_t line = 0; line < lines; ++line) {
      auto at = [&](int64_t k) { return along_x ? s.arena(k, line) + offset : s.arena(line, k) + offset; };
      std::copy_n(at(0), count, acc.begin());
      for (int64_t k = 1; k < length; ++k) {
        const float* v = at(k);
        for (int64_t e = 0; e < count; ++e)
          acc[static_cast<size_t>(e)] =
              max ? std::max(acc[static_cast<size_t>(e)], v[e]) : acc[static_cast<size_t>(e)] + v[e];
      }
      for (int64_t k = 0; k < length; ++k) std::copy_n(acc.begin(), count, at(k));
    }
  }

  // Stage-to-stage transfer of the residual stream (rows layout), in two halves because the
  // stages' activation areas share host memory: gather each row's segment from the source stage's
  // first column, then deliver every destination row its segment.
  std::vector<float> gather_rows(StageArenas& from, int64_t tokens) {
    const Buffer& b = from.buffers.at(static_cast<size_t>(from.output));
    const int64_t d = b.part_width;
    std::vector<float> rows(static_cast<size_t>(tokens * d));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t e = 0; e < d; ++e) {
        const int64_t src_row = e / b.cap;
        rows[static_cast<size_t>(t * d + e)] = from.arena(0, src_row)[b.offset + t * b.cap + (e - src_row * b.cap)];
      }
    return rows;
  }

  // A stage's input rows start undefined (NaN) each pass: its activation area shares host memory
  // with the other stages', and only a transfer the plan names may fill it.
  void clear_input(StageArenas& s, int64_t tokens) {
    const Buffer& b = s.buffers.at(static_cast<size_t>(s.input));
    for (int64_t c = 0; c < s.px * s.py; ++c)
      std::fill_n(s.arena(c % s.px, c / s.px) + b.offset, tokens * b.cap, std::numeric_limits<float>::quiet_NaN());
  }

  void deliver_rows(StageArenas& to, const float* rows, int64_t tokens) {
    const Buffer& b = to.buffers.at(static_cast<size_t>(to.input));
    const int64_t d = b.part_width;
    for (int64_t j = 0; j < to.py; ++j) {
      const Segment seg = segment(d, to.py, j);
      for (int64_t i = 0; i < to.px; ++i)
        for (int64_t t = 0; t < tokens; ++t)
          std::copy_n(rows + t * d + seg.begin, seg.size(), to.arena(i, j) + b.offset + t * b.cap);
    }
  }

  // --- kernels: each reads and writes one core's arena ------------------------------------------

  // Runs kernel(w, a, i, j) for every core: w = its resident weights and KV cache, a = its
  // activation area. A kernel sees nothing of any other core.
  template <typename Kernel>
  void for_cores(StageArenas& s, Kernel&& kernel) {
#pragma omp parallel for schedule(static) if (s.px * s.py > 64)
    for (int64_t c = 0; c < s.px * s.py; ++c)
      kernel(s.weights(c % s.px, c / s.px), s.arena(c % s.px, c / s.px), c % s.px, c / s.px);
  }

  // Runs kernel(w, a, i, j) on the first core of every line of a replicated layout (Rows: each
  // row's first core; Cols: each column's) and writes what it wrote — `spans` of (offset, count)
  // floats in its activation area — into the line's other cores. The cores of a line hold the same
  // inputs (they arrived by one broadcast or allreduce) and the same weights, so each would compute
  // exactly these values: this saves the host the replicated arithmetic, not the machine (the
  // timing model charges every core).
  template <typename Kernel>
  void for_lines(StageArenas& s, Layout layout, std::initializer_list<std::pair<int64_t, int64_t>> spans,
                 Kernel&& kernel) {
    const bool rows = layout == Layout::Rows;
    const int64_t lines = rows ? s.py : s.px, length = rows ? s.px : s.py;
#pragma omp parallel for schedule(static) if (lines * length > 64)
    for (int64_t line = 0; line < lines; ++line) {
      const int64_t i0 = rows ? 0 : line, j0 = rows ? line : 0;
      float* leader = s.arena(i0, j0);
      kernel(s.weights(i0, j0), leader, i0, j0);
      for (int64_t k = 1; k < length; ++k) {
        float* a = rows ? s.arena(k, line) : s.arena(line, k);
        for (const auto& [offset, count] : spans) std::copy_n(leader + offset, count, a + offset);
      }
    }
  }

  // LayerNorm in two steps (mean, then variance and the scaling), RMSNorm in one: each sums over
  // its core's segment of every row, the plan's allreduce completes the sums down the columns,
  // and the last step scales its segment into the output.
  enum class NormSum { Values, Deviations, Squares };
  Reduction norm_sums(StageArenas& s, const StageOp& so, int64_t tokens, NormSum what) {
    const Ref& in = so.in[0];
    const auto d = static_cast<float>(so.op->width);
    const int64_t at = s.stats + (what == NormSum::Deviations ? tokens : 0);
    for_lines(s, Layout::Rows, {{at, tokens}}, [&](float*, float* a, int64_t i, int64_t j) {
      const int64_t n = s.buf(in).seg(s.px, s.py, i, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float mean = what == NormSum::Deviations ? a[s.stats + t] / d : 0.0f;
        const float* x = a + s.at(in, t);
        float sum = 0;
        for (int64_t e = 0; e < n; ++e) sum += what == NormSum::Values ? x[e] : (x[e] - mean) * (x[e] - mean);
        a[at + t] = sum;
      }
    });
    return {at, tokens, false};
  }

  void norm_scale(StageArenas& s, const StageOp& so, int64_t tokens) {
    const bool layer_norm = so.op->op == ir::OpKind::LayerNorm;
    const auto d = static_cast<double>(so.op->width);
    const Ref out{so.out, 0};
    const Buffer& ob = s.buffers.at(static_cast<size_t>(so.out));
    for_lines(s, Layout::Rows, {{ob.offset, tokens * ob.stride()}}, [&](float* w, float* a, int64_t i, int64_t j) {
      const int64_t n = s.buf(so.in[0]).seg(s.px, s.py, i, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float mean = layer_norm ? a[s.stats + t] / static_cast<float>(d) : 0.0f;
        const double squares = a[s.stats + (layer_norm ? tokens : 0) + t];
        const auto inv = static_cast<float>(1.0 / std::sqrt(squares / d + so.eps));
        const float* x = a + s.at(so.in[0], t);
        float* y = a + s.at(out, t);
        for (int64_t e = 0; e < n; ++e)
          y[e] = layer_norm ? (x[e] - mean) * inv * w[so.gamma + e] + w[so.beta + e] : x[e] * inv * w[so.gamma + e];
      }
    });
  }

  // A projection. From the rows layout: each core's partial products over its k segment, for
  // every part of the output, to be allreduced down each column (leaving the output in the cols
  // layout). From the cols layout: the reverse, allreduced along each row.
  Reduction projection(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Ref& in = so.in[0];
    const Buffer &ib = s.buf(in), &ob = s.buffers.at(static_cast<size_t>(so.out));
    count_zeros(so.op->local, s, in, tokens);
    const int64_t width = so.tile_width;
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const int64_t kn = ib.seg(s.px, s.py, i, j).size(), nn = ob.seg(s.px, s.py, i, j).size();
      const int64_t core = j * s.px + i;
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = a + s.part + t * width;
        std::fill_n(out, width, 0.0f);
        for (int64_t k = 0; k < kn; ++k) {
          const float xk = round_to_format(a[s.at(in, t) + k], activations);
          if (skip_weight_zeros || ob.parts == 1) {
            accumulate_row(s, core, w, so.weight, width, k, xk, out, 0, nn);
          } else {
            for (int64_t p = 0; p < ob.parts; ++p)
              accumulate_row(s, core, w, so.weight, width, k, xk, out, p * ob.cap, p * ob.cap + nn);
          }
        }
      }
    });
    return {s.part, tokens * width, false};
  }

  // The reduced partial sums plus the bias, into the projection's output.
  void projection_finish(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& ob = s.buffers.at(static_cast<size_t>(so.out));
    for_lines(s, ob.layout, {{ob.offset, tokens * ob.stride()}}, [&](float* w, float* a, int64_t, int64_t) {
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t n = 0; n < ob.stride(); ++n)
          a[ob.offset + t * ob.stride() + n] = a[s.part + t * so.tile_width + n] + w[so.bias + n];
    });
  }

  // RoPE on each input in place, whose head dimensions are stored pair-adjacent: (2i, 2i+1)
  // holds the rotate-half pair (i, i + head_dim/2), so every pair is on one core.
  void rope(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t hd = so.op->head_dim, half = hd / 2;
    const Buffer& b = s.buf(so.in.front());  // every input is a part of one projection's output
    for (const Ref& r : so.in)
      if (r.buffer != so.in.front().buffer) fail("'{}': the mesh rotates parts of one projection only", so.op->name);
    for_lines(s, b.layout, {{b.offset, tokens * b.stride()}}, [&](float*, float* a, int64_t i, int64_t j) {
      for (const Ref& r : so.in) {
        const Segment seg = s.buf(r).seg(s.px, s.py, i, j);
        for (int64_t t = 0; t < tokens; ++t) {
          const int64_t pos = first_position + t;
          float* v = a + s.at(r, t);
          for (int64_t e = seg.begin; e + 1 < seg.end; e += 2) {
            const auto at = static_cast<size_t>(pos * half + (e % hd) / 2);
            const float c = so.rope.cos[at], sn = so.rope.sin[at];
            const float x1 = v[e - seg.begin], x2 = v[e - seg.begin + 1];
            v[e - seg.begin] = x1 * c + (-x2) * sn;
            v[e - seg.begin + 1] = x2 * c + x1 * sn;
          }
        }
      }
    });
  }

  // Attention in four steps, each ending in the plan's allreduce: scores (the new tokens' keys and
  // values appended to the row that owns their position, then each core's partial dot products
  // over its head-dimension segment), the running max, the softmax denominators, the weighted values.
  bool visible(const StageArenas& s, int64_t t, int64_t slot, int64_t j, int64_t first_position) const {
    return slot * s.py + j <= first_position + t;
  }

  Reduction attention_scores(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const Ref &q = so.in[0], &k = so.in[1], &v = so.in[2];
    const int64_t hd = so.op->head_dim, stride = s.heads * s.slots, nc = s.kv_cap;
    for_cores(s, [&](float* w, float* a, int64_t, int64_t j) {
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t p = first_position + t;
        if (p % s.py != j) continue;
        const int64_t slot = p / s.py;
        for (int64_t e = 0; e < nc; ++e) {
          w[s.k_cache + slot * nc + e] = round_to_format(a[s.at(k, t) + e], kv);
          w[s.v_cache + slot * nc + e] = round_to_format(a[s.at(v, t) + e], kv);
        }
      }
    });
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const Segment seg = s.buf(q).seg(s.px, s.py, i, j);
      std::fill_n(a + s.scores, tokens * stride, 0.0f);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t slot = 0; visible(s, t, slot, j, first_position); ++slot)
          for (int64_t e = seg.begin; e < seg.end; ++e)
            a[s.scores + t * stride + (e / hd) * s.slots + slot] +=
                a[s.at(q, t) + (e - seg.begin)] * w[s.k_cache + slot * nc + (e - seg.begin)];
    });
    return {s.scores, tokens * stride, false};
  }

  Reduction attention_max(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t heads = s.heads, stride = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(so.op->head_dim));
    // The scores were allreduced along each row: every core of a row holds them.
    for_lines(s, Layout::Rows, {{s.stats, tokens * heads}}, [&](float*, float* a, int64_t, int64_t j) {
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t hh = 0; hh < heads; ++hh) {
          float m = -INFINITY;
          for (int64_t slot = 0; slot < s.slots && visible(s, t, slot, j, first_position); ++slot)
            m = std::max(m, a[s.scores + t * stride + hh * s.slots + slot] * scale);
          a[s.stats + t * heads + hh] = m;
        }
    });
    return {s.stats, tokens * heads, true};
  }

  Reduction attention_sum(StageArenas& s, const StageOp& so, int64_t tokens, int64_t first_position) {
    const int64_t heads = s.heads, stride = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(so.op->head_dim));
    const std::pair<int64_t, int64_t> scores{s.scores, tokens * stride}, sums{s.stats + tokens * heads, tokens * heads};
    for_lines(s, Layout::Rows, {scores, sums}, [&](float*, float* a, int64_t, int64_t j) {
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t hh = 0; hh < heads; ++hh) {
          const float m = a[s.stats + t * heads + hh];
          float sum = 0;
          for (int64_t slot = 0; slot < s.slots; ++slot) {
            float& sc = a[s.scores + t * stride + hh * s.slots + slot];
            sc = visible(s, t, slot, j, first_position) ? std::exp(sc * scale - m) : 0.0f;
            sum += sc;
          }
          a[s.stats + tokens * heads + t * heads + hh] = sum;
        }
    });
    return {s.stats + tokens * heads, tokens * heads, false};
  }

  Reduction attention_values(StageArenas& s, const StageOp& so, int64_t tokens) {
    const int64_t heads = s.heads, hd = so.op->head_dim, stride = heads * s.slots, nc = s.kv_cap;
    const Buffer& ob = s.buffers.at(static_cast<size_t>(so.out));
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const Segment seg = ob.seg(s.px, s.py, i, j);
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = a + ob.offset + t * ob.stride();
        std::fill_n(out, ob.stride(), 0.0f);
        for (int64_t e = seg.begin; e < seg.end; ++e) {
          const int64_t hh = e / hd;
          const float inv = 1.0f / a[s.stats + tokens * heads + t * heads + hh];
          for (int64_t slot = 0; slot < s.slots; ++slot)
            out[e - seg.begin] +=
                a[s.scores + t * stride + hh * s.slots + slot] * inv * w[s.v_cache + slot * nc + (e - seg.begin)];
        }
      }
    });
    return {ob.offset, tokens * ob.stride(), false};
  }

  // Elementwise ops over each core's segment: a + b, a * b, GELU(a), SiLU(a) or SiLU(a) x b.
  void elementwise(StageArenas& s, const StageOp& so, int64_t tokens) {
    const Buffer& ob = s.buffers.at(static_cast<size_t>(so.out));
    const LoweredOp& op = *so.op;
    for_lines(s, ob.layout, {{ob.offset, tokens * ob.stride()}}, [&](float*, float* a, int64_t i, int64_t j) {
      const int64_t n = ob.seg(s.px, s.py, i, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = a + s.at(so.in[0], t);
        const float* y = so.in.size() > 1 ? a + s.at(so.in[1], t) : nullptr;
        float* out = a + ob.offset + t * ob.stride();
        for (int64_t e = 0; e < n; ++e) {
          switch (op.kind) {
            case LoweredKind::Add: out[e] = x[e] + y[e]; break;
            case LoweredKind::Mul: out[e] = x[e] * y[e]; break;
            default:
              out[e] = op.op == ir::OpKind::Gelu ? gelu(x[e])
                       : op.gated                ? x[e] / (1.0f + std::exp(-x[e])) * y[e]
                                                 : x[e] / (1.0f + std::exp(-x[e]));
          }
        }
      }
    });
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
    if (k == "rope")
      rope(s, so, tokens, first);
    else if (k == "add" || k == "mul" || k == "activation")
      elementwise(s, so, tokens);
    else
      fail("plan step '{}': the mesh data plane has no kernel '{}'", step.name, k);
    return {};
  }

  // The local work that consumes a collective's result within the same step.
  void finish_kernel(const program::Step& step, StageArenas& s, const StageOp& so, int64_t tokens) {
    if (step.kernel == "layernorm.variance" || step.kernel == "rmsnorm") norm_scale(s, so, tokens);
    if (step.kernel == "projection") projection_finish(s, so, tokens);
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
      if (r.count == 0) fail("plan step '{}' names an allreduce but its kernel leaves nothing to reduce", step.name);
      allreduce(s, step.pattern == program::Pattern::AllreduceX, r.offset, r.count, r.max);
    }
    finish_kernel(step, s, so, tokens);
  }
};

namespace {

// Binds a stage's ops (a layer's, or the head's) to buffers and resident tiles and fills the
// tiles from the checkpoint, in the layouts of docs/mesh-mapping.md. Matrices are indexed W[k][n]
// (input k, output n) whatever the checkpoint's own orientation: GPT-2's Conv1D stores [in, out],
// nn.Linear stores [out, in].
class StageBuilder {
 public:
  StageBuilder(MeshDataPlane::State& st, StageArenas& s, const std::vector<LoweredOp>& ops)
      : st_(st), s_(s), ops_(ops), g_(st.graph) {}

  void build() {
    s_.px = s_.region.width, s_.py = s_.region.height;
    s_.slots = segment_capacity(st_.context, s_.py);
    s_.tokens = s_.is_head ? 1 : st_.chunk;
    s_.input = add_buffer(Layout::Rows, 1, residual_width(), 1);
    int64_t widest_partial = 0;
    for (const LoweredOp& op : ops_) {
      StageOp so = bind(op);
      widest_partial = std::max(widest_partial, so.tile_width);
      s_.ops[op.name] = std::move(so);
    }
    s_.output = s_.ops.empty() ? s_.input : s_.ops.at(ops_.back().name).out;
    s_.part = take(act_, s_.tokens * widest_partial);
    s_.scores = take(act_, s_.tokens * s_.heads * s_.slots);
    s_.stats = take(act_, 2 * s_.tokens * std::max<int64_t>(s_.heads, 1));
    s_.weight_floats = cur_, s_.scratch_floats = act_;
    s_.resident.assign(static_cast<size_t>(s_.px * s_.py), std::vector<float>(static_cast<size_t>(cur_), 0.0f));
    for (const auto& [name, so] : s_.ops) fill(so);
    if (st_.skip_weight_zeros) compress_tiles();
  }

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

  bool produced_here(int id) const {
    for (const LoweredOp& op : ops_)
      if (std::find(op.nodes.begin(), op.nodes.end(), id) != op.nodes.end()) return true;
    return false;
  }

  int add_buffer(Layout layout, int64_t parts, int64_t part_width, int64_t align) {
    Buffer b{layout, parts, part_width, align, 0, 0};
    b.cap = layout == Layout::Rows ? segment_capacity(part_width, s_.py) : segment_capacity(part_width, s_.px, align);
    b.offset = take(act_, s_.tokens * b.stride());
    s_.buffers.push_back(b);
    return static_cast<int>(s_.buffers.size()) - 1;
  }

  // Head-dimension space (the width of the queries) is split with RoPE's pairs kept together.
  int64_t align_for(int64_t width) const { return width == residual_width() ? 2 : 1; }

  Ref resolve(int id) const {
    if (const auto it = refs_.find(id); it != refs_.end()) return it->second;
    if (produced_here(id)) fail("graph node %{} is used before the mesh data plane computed it", id);
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
      case LoweredKind::Norm:
        so.in = {resolve(first.inputs[0])};
        if (layout_of(so.in[0]) != Layout::Rows) fail("'{}': the mesh normalises rows-layout vectors only", op.name);
        so.out = add_buffer(Layout::Rows, 1, op.width, 1);
        so.eps = static_cast<float>(first.float_attr("eps"));
        so.gamma = take(cur_, s_.buf(so.in[0]).cap);
        if (op.vectors == 2) so.beta = take(cur_, s_.buf(so.in[0]).cap);
        refs_[op.nodes.front()] = {so.out, 0};
        break;
      case LoweredKind::Projection: {
        so.in = {resolve(first.inputs[0])};
        const Buffer& ib = s_.buf(so.in[0]);
        if ((ib.layout == Layout::Cols) != op.split_input)
          fail("'{}': its input's layout does not match the plan's split", op.name);
        if (ib.layout == Layout::Rows) {
          const auto parts = static_cast<int64_t>(op.part_widths.size());
          const int64_t widest = *std::max_element(op.part_widths.begin(), op.part_widths.end());
          so.out = add_buffer(Layout::Cols, parts, widest, align_for(widest));
        } else {
          so.out = add_buffer(Layout::Rows, 1, op.n, 1);
        }
        so.tile_rows = ib.cap, so.tile_width = s_.buffers.at(static_cast<size_t>(so.out)).stride();
        so.weight = take(cur_, so.tile_rows * so.tile_width), so.bias = take(cur_, so.tile_width);
        bind_parts(op, so.out);
        break;
      }
      case LoweredKind::Rope:
        for (int id : op.nodes) {
          so.in.push_back(resolve(g_.node(id).inputs[0]));
          refs_[id] = so.in.back();  // rotated in place
        }
        so.rope = ref::rope_table(first, st_.context);
        break;
      case LoweredKind::Attention: {
        so.in = {resolve(first.inputs[0]), resolve(first.inputs[1]), resolve(first.inputs[2])};
        const int64_t q_width = op.heads * op.head_dim;
        for (const Ref& r : so.in)
          if (layout_of(r) != Layout::Cols || s_.buf(r).part_width != q_width)
            fail("'{}': the mesh needs q, k and v in the cols layout, one column per query dimension", op.name);
        if (s_.heads) fail("'{}': a mesh stage holds one attention", op.name);
        so.out = add_buffer(Layout::Cols, 1, q_width, align_for(q_width));
        s_.heads = op.heads, s_.kv_cap = s_.buf(so.in[0]).cap;
        s_.k_cache = take(cur_, s_.slots * s_.kv_cap), s_.v_cache = take(cur_, s_.slots * s_.kv_cap);
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
        const Buffer& a = s_.buf(so.in[0]);
        for (const Ref& r : so.in)
          if (s_.buf(r).layout != a.layout || s_.buf(r).cap != a.cap)
            fail("'{}': its inputs lie in different layouts on the mesh", op.name);
        // The residual stream is updated in place (the value it held is not read again).
        const bool in_place = op.kind == LoweredKind::Add && so.in[0].buffer == s_.input && last_use(op, s_.input);
        so.out = in_place ? so.in[0].buffer : add_buffer(a.layout, 1, op.width, a.align);
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
          if (const auto ref = refs_.find(in); ref != refs_.end() ? ref->second.buffer == b
                                                                  : !produced_here(in) && b == s_.input)
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

  // Where each stored column of part `part` comes from: the graph node computing the part (or its
  // slice), its weight, bias and column offset, and how the mesh rearranges it.
  struct PartSource {
    const float* weight = nullptr;
    const float* bias = nullptr;
    int64_t k = 0, n_total = 0, offset = 0;  // the weight's k, its output count, the part's first column
    bool linear = false;
    bool pairs = false;  // RoPE reads it: head dimensions stored pair-adjacent
    int64_t hd = 1, group = 1;  // grouped-query K/V: each of `group` query heads gets its KV head
  };

  const float* param(const std::string& name) const {
    const model::Tensor* t = st_.weights->find(name);
    if (!t) fail("weights are missing '{}', which the plan for {} needs", name, st_.model.name);
    return t->values.data();
  }

  PartSource part_source(const LoweredOp& op, size_t part) const {
    const int node_id = op.nodes.size() > 1 ? op.nodes[part] : op.nodes.front();
    const ir::Node& mm = g_.node(node_id);
    const ir::Node& w = g_.node(mm.inputs[1]);
    PartSource src;
    src.weight = param(w.name);
    if (mm.inputs.size() == 3) src.bias = param(g_.node(mm.inputs[2]).name);
    src.linear = mm.op == ir::OpKind::Linear, src.k = op.k;
    src.n_total = mm.type.shape.dims.back();
    int value = node_id;
    if (op.nodes.size() == 1 && op.part_widths.size() > 1) {
      for (const auto& [slice, p] : slices(op))
        if (p == static_cast<int64_t>(part)) value = slice, src.offset = g_.node(slice).int_attr("start");
    }
    // Follow the part through RoPE to the attention that reads it.
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      const ir::Node& user = g_.nodes()[i];
      if (std::find(user.inputs.begin(), user.inputs.end(), value) == user.inputs.end()) continue;
      if (user.op == ir::OpKind::Rope) {
        src.pairs = true, src.hd = user.int_attr("head_dim");
        value = static_cast<int>(i), i = 0;  // and its users
        continue;
      }
      if (user.op == ir::OpKind::Attention && user.inputs[0] != value) {
        src.hd = user.int_attr("head_dim");
        src.group = user.int_attr("n_heads") / user.int_attr("n_kv_heads");
      }
    }
    return src;
  }

  // Column n of the stored part -> the column of the part in the checkpoint.
  static int64_t source_column(const PartSource& src, int64_t n) {
    const int64_t head = n / src.hd, r = n % src.hd, half = src.hd / 2;
    const int64_t within = src.pairs ? (r % 2 == 0 ? r / 2 : r / 2 + half) : r;
    return (head / src.group) * src.hd + within;
  }

  static float at(const PartSource& src, int64_t k, int64_t column) {
    const int64_t c = src.offset + column;
    return src.linear ? src.weight[c * src.k + k] : src.weight[k * src.n_total + c];
  }

  void fill(const StageOp& so) {
    const LoweredOp& op = *so.op;
    if (op.kind == LoweredKind::Norm) {
      const ir::Node& n = g_.node(op.nodes.front());
      const float* gamma = param(g_.node(n.inputs[1]).name);
      const float* beta = op.vectors == 2 ? param(g_.node(n.inputs[2]).name) : nullptr;
      for_each_core([&](float* w, int64_t i, int64_t j) {
        const Segment rows = s_.buf(so.in[0]).seg(s_.px, s_.py, i, j);
        std::copy(gamma + rows.begin, gamma + rows.end, w + so.gamma);
        if (beta) std::copy(beta + rows.begin, beta + rows.end, w + so.beta);
      });
      return;
    }
    if (op.kind != LoweredKind::Projection) return;
    const Buffer &ib = s_.buf(so.in[0]), &ob = s_.buffers.at(static_cast<size_t>(so.out));
    std::vector<PartSource> sources;
    for (size_t p = 0; p < static_cast<size_t>(ob.parts); ++p) sources.push_back(part_source(op, p));
    for_each_core([&](float* w, int64_t i, int64_t j) {
      const Segment ks = ib.seg(s_.px, s_.py, i, j), ns = ob.seg(s_.px, s_.py, i, j);
      for (int64_t p = 0; p < ob.parts; ++p) {
        const PartSource& src = sources[static_cast<size_t>(p)];
        for (int64_t n = ns.begin; n < ns.end; ++n) {
          const int64_t c = ob.layout == Layout::Cols ? source_column(src, n) : n;
          for (int64_t k = ks.begin; k < ks.end; ++k)
            w[so.weight + (k - ks.begin) * so.tile_width + p * ob.cap + (n - ns.begin)] = at(src, k, c);
          if (src.bias) w[so.bias + p * ob.cap + (n - ns.begin)] = src.bias[src.offset + c];
        }
      }
    });
  }

  template <typename F>
  void for_each_core(F&& f) {
    for (int64_t j = 0; j < s_.py; ++j)
      for (int64_t i = 0; i < s_.px; ++i) f(s_.weights(i, j), i, j);
  }

  // Every core's compressed weight tiles from its dense ones (see SparseTile).
  void compress_tiles() {
    s_.sparse.assign(s_.resident.size(), {});
    for (size_t c = 0; c < s_.resident.size(); ++c) {
      const float* w = s_.resident[c].data();
      for (const auto& [name, so] : s_.ops) {
        if (so.op->kind != LoweredKind::Projection) continue;
        SparseTile& tile = s_.sparse[c][so.weight];
        tile.row_start.push_back(0);
        for (int64_t k = 0; k < so.tile_rows; ++k) {
          for (int64_t n = 0; n < so.tile_width; ++n)
            if (const float v = w[so.weight + k * so.tile_width + n]; v != 0.0f) {
              tile.column.push_back(static_cast<int32_t>(n));
              tile.value.push_back(v);
            }
          tile.row_start.push_back(static_cast<int32_t>(tile.value.size()));
        }
      }
    }
  }

  MeshDataPlane::State& st_;
  StageArenas& s_;
  const std::vector<LoweredOp>& ops_;
  const ir::Graph& g_;
  std::map<int, Ref> refs_;
  int64_t cur_ = 0, act_ = 0;  // cursors in the resident area and in the activation area
};

}  // namespace

MeshDataPlane::MeshDataPlane(const program::Program& plan, const model::Weights& weights)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.model = ir::parse_model_config(plan.model_yaml, plan.model_origin);
  st.graph = ir::build_model_graph(st.model);
  st.lowered = compiler::lower_graph(st.graph);
  st.activations = parse_float_format(plan.precision.activations);
  st.kv = parse_float_format(plan.precision.kv);
  st.skip_weight_zeros = plan.skip_weight_zeros;
  st.skip_zero_activations = plan.skip_zero_activations;
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
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    StageArenas& stage = st.stages[s];
    stage.region = plan.stages[s].region;
    stage.is_head = s + 1 == plan.stages.size();
    StageBuilder(st, stage, stage.is_head ? st.lowered.head : st.lowered.layers[s].ops).build();
  }
  int64_t pool = 0;
  for (const auto& s : st.stages) pool = std::max(pool, s.px * s.py * s.scratch_floats);
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
  for (const auto& s : state_->stages) n += static_cast<int64_t>(s.resident.size());
  return n;
}

int64_t MeshDataPlane::largest_arena_bytes() const {
  int64_t n = 0;
  for (const auto& s : state_->stages) n = std::max(n, (s.weight_floats + s.scratch_floats) * 4);
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
  // The host's embedding lookups: each table indexed by the tokens or by their positions, summed
  // in the graph's order.
  struct Lookup {
    const float* table;
    int64_t width;
    bool by_position;
  };
  std::vector<Lookup> lookups;
  for (const auto& op : st.lowered.embedding)
    for (int id : op.nodes) {
      const ir::Node& node = st.graph.node(id);
      if (node.op != ir::OpKind::Embedding) continue;
      const ir::Node &table = st.graph.node(node.inputs[0]), &ids = st.graph.node(node.inputs[1]);
      const model::Tensor* t = st.weights->find(table.name);
      if (!t) fail("weights are missing '{}'", table.name);
      lookups.push_back({t->values.data(), table.type.shape.dims[1], ids.name == "positions"});
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
        const int64_t d = st.stages.at(static_cast<size_t>(step.stage)).buffers.front().part_width;
        std::vector<float> rows(static_cast<size_t>(count * d), 0.0f);
        for (int64_t t = 0; t < count; ++t)
          for (const Lookup& l : lookups) {
            const int64_t id = l.by_position ? first + t : tokens[static_cast<size_t>(begin + t)];
            for (int64_t e = 0; e < d; ++e) rows[static_cast<size_t>(t * d + e)] += l.table[id * l.width + e];
          }
        st.deliver_rows(st.stages.at(static_cast<size_t>(step.stage)), rows.data(), count);
      } else if (step.pattern == program::Pattern::StageTransfer) {
        in_flight[step.to_stage] = st.gather_rows(st.stages.at(static_cast<size_t>(step.stage)), count);
      } else {
        st.run_step(step, count, first);
      }
    }
    // The LM head's stage holds one token at a time: the prompt's last, or every one when asked.
    const int64_t d = st.head().buffers.front().part_width;
    for (int64_t t = 0; t < count; ++t) {
      if (last_only && begin + t != n - 1) continue;
      st.clear_input(st.head(), 1);
      if (const auto rows = in_flight.find(head_stage); rows != in_flight.end())
        st.deliver_rows(st.head(), rows->second.data() + t * d, 1);
      float* row = st.logits.data() + (last_only ? 0 : (begin + t) * vocab);
      for (const program::Step& step : steps) {
        if (step.stage != head_stage) continue;
        if (step.pattern == program::Pattern::HostOut) {
          // The host gathers each column's logits from the first row of the stage.
          StageArenas& s = st.head();
          const Buffer& b = s.buffers.at(static_cast<size_t>(s.output));
          for (int64_t i = 0; i < s.px; ++i) {
            const Segment seg = b.seg(s.px, s.py, i, 0);
            std::copy_n(s.arena(i, 0) + b.offset, seg.size(), row + seg.begin);
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
