#include "tessera/target/mesh2d/mesh_numerics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/mesh2d/layout.hpp"

namespace tessera::sim {

namespace {

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

// One stage's cores and where each buffer sits in every core's arena (all cores of a stage share
// one layout, sized for the largest segment).
struct StageArenas {
  arch::Region region;
  int64_t px = 0, py = 0;
  bool is_head = false;
  int64_t fc_parts = 1;  // GPT-2: c_fc; Llama: gate|up side by side
  // Capacities: d over rows, d over columns, d_ff over columns, vocab over columns, KV slots, tokens.
  int64_t nr = 0, nc = 0, fc = 0, vc = 0, slots = 0, tokens = 0;
  // Weight offsets.
  int64_t ln1_g = 0, ln1_b = 0, ln2_g = 0, ln2_b = 0, w_qkv = 0, b_qkv = 0, w_o = 0, b_o = 0, w_fc = 0, b_fc = 0,
          w_pr = 0, b_pr = 0, w_lm = 0;
  // KV cache and activation offsets.
  int64_t k_cache = 0, v_cache = 0, x = 0, h = 0, qkv = 0, o = 0, f = 0, part = 0, scores = 0, stats = 0;
  int64_t weight_floats = 0, scratch_floats = 0;
  // Per core: weights and KV cache, which persist for the whole run.
  std::vector<std::vector<float>> resident;           // by core index j * px + i
  std::vector<std::map<int64_t, SparseTile>> sparse;  // by core index, then weight offset (when skipping)
  // Per core: activations, which live only while the stage runs. Stages run one after another,
  // so all stages' activation areas share one host buffer (each core still has its own area).
  float* scratch = nullptr;

  float* weights(int64_t i, int64_t j) { return resident[static_cast<size_t>(j * px + i)].data(); }
  float* arena(int64_t i, int64_t j) { return scratch + (j * px + i) * scratch_floats; }
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
  const model::Weights* weights = nullptr;
  int64_t chunk = 1, context = 0, position = 0;
  std::vector<StageArenas> stages;                         // layers, then the head
  std::vector<program::Step> prefill_steps, decode_steps;  // the plan's, run as they are
  std::vector<float> scratch_pool;                         // backs every stage's activation areas (see StageArenas)
  std::vector<float> rope_cos, rope_sin;                   // [context, head_dim / 2], Llama only
  bool llama() const { return model.family == ir::ModelFamily::Llama; }
  std::vector<float> logits;
  FloatFormat activations = FloatFormat::F32, kv = FloatFormat::F32;
  bool skip_weight_zeros = false, skip_zero_activations = false;
  std::map<std::string, std::pair<int64_t, int64_t>> input_zeros;  // per linear layer: zeros, inputs

  // A probe, not a transfer: counts the zeros among a linear layer's (rounded) inputs, reading the
  // one copy of each segment held by the first line of cores.
  void count_zeros(const std::string& layer, StageArenas& s, bool rows_layout, int64_t tokens, int64_t in,
                   int64_t stride, int64_t k_total) {
    auto& [zeros, inputs] = input_zeros[layer];
    const int64_t lines = rows_layout ? s.py : s.px;
    for (int64_t l = 0; l < lines; ++l) {
      const float* a = rows_layout ? s.arena(0, l) : s.arena(l, 0);
      const int64_t kn = segment(k_total, lines, l, !rows_layout && k_total == model.d_model ? 2 : 1).size();
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t k = 0; k < kn; ++k) zeros += round_to_format(a[in + t * stride + k], activations) == 0.0f;
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

  StageArenas& head() { return stages.back(); }

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

  // Copies the residual stream (rows layout, `tokens` rows of d) from one stage to the next; each
  // destination row gathers its segment from the source rows that hold it (their first column).
  // Stage-to-stage transfer of the residual stream (rows layout), in two halves because the
  // stages' activation areas share host memory: gather each row's segment from the source stage's
  // first column, then deliver every destination row its segment.
  std::vector<float> gather_rows(StageArenas& from, int64_t tokens) {
    const int64_t d = model.d_model;
    std::vector<float> rows(static_cast<size_t>(tokens * d));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t e = 0; e < d; ++e) {
        const int64_t src_row = e / from.nr;
        rows[static_cast<size_t>(t * d + e)] = from.arena(0, src_row)[from.x + t * from.nr + (e - src_row * from.nr)];
      }
    return rows;
  }

  // A stage's input rows start undefined (NaN) each pass: its activation area shares host memory
  // with the other stages', and only a transfer the plan names may fill it.
  void clear_input(StageArenas& s, int64_t tokens) {
    for (int64_t c = 0; c < s.px * s.py; ++c)
      std::fill_n(s.arena(c % s.px, c / s.px) + s.x, tokens * s.nr, std::numeric_limits<float>::quiet_NaN());
  }

  void deliver_rows(StageArenas& to, const float* rows, int64_t tokens) {
    const int64_t d = model.d_model;
    for (int64_t j = 0; j < to.py; ++j) {
      const Segment seg = segment(d, to.py, j);
      for (int64_t i = 0; i < to.px; ++i)
        for (int64_t t = 0; t < tokens; ++t)
          std::copy_n(rows + t * d + seg.begin, seg.size(), to.arena(i, j) + to.x + t * to.nr);
    }
  }

  // --- stage kernels: each reads and writes one core's arena -------------------------------------

  // LayerNorm in two steps (mean, then variance and the scaling), RMSNorm in one: each sums over
  // its core's segment of every row, the plan's allreduce completes the sums down the columns,
  // and the last step scales its segment into `h`.
  Reduction norm_sums(StageArenas& s, int64_t tokens, bool variance) {
    const int64_t d = model.d_model;
    for_cores(s, [&](float*, float* a, int64_t, int64_t j) {
      const int64_t n = segment(d, s.py, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float mean = variance ? a[s.stats + t] / static_cast<float>(d) : 0.0f;
        float sum = 0;
        for (int64_t e = 0; e < n; ++e) {
          const float v = a[s.x + t * s.nr + e];
          sum += variance || llama() ? (v - mean) * (v - mean) : v;
        }
        a[s.stats + (variance ? tokens : 0) + t] = sum;
      }
    });
    return {s.stats + (variance ? tokens : 0), tokens, false};
  }

  void norm_scale(StageArenas& s, int64_t tokens, int64_t g, int64_t b) {
    const int64_t d = model.d_model;
    for_cores(s, [&](float* w, float* a, int64_t, int64_t j) {
      const int64_t n = segment(d, s.py, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        const float mean = llama() ? 0.0f : a[s.stats + t] / static_cast<float>(d);
        const double squares = a[s.stats + (llama() ? 0 : tokens) + t];
        const auto inv = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(d) + model.norm_eps));
        for (int64_t e = 0; e < n; ++e)
          a[s.h + t * s.nr + e] = llama() ? a[s.x + t * s.nr + e] * inv * w[g + e]
                                          : (a[s.x + t * s.nr + e] - mean) * inv * w[g + e] + w[b + e];
      }
    });
  }

  // RoPE on q and k, whose head dimensions are stored pair-adjacent: (2i, 2i+1) holds the
  // rotate-half pair (i, i + head_dim/2), so every pair is on one core (program/layout.hpp).
  void rope(StageArenas& s, int64_t tokens, int64_t first_position) {
    const int64_t hd = model.head_dim(), half = hd / 2;
    for_cores(s, [&](float*, float* a, int64_t i, int64_t) {
      const Segment seg = segment(model.d_model, s.px, i, 2);
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t pos = first_position + t;
        for (int64_t part = 0; part < 2; ++part) {
          float* v = a + s.qkv + t * 3 * s.nc + part * s.nc;
          for (int64_t e = seg.begin; e + 1 < seg.end; e += 2) {
            const auto at = static_cast<size_t>(pos * half + (e % hd) / 2);
            const float c = rope_cos[at], sn = rope_sin[at];
            const float x1 = v[e - seg.begin], x2 = v[e - seg.begin + 1];
            v[e - seg.begin] = x1 * c + (-x2) * sn;
            v[e - seg.begin + 1] = x2 * c + x1 * sn;
          }
        }
      }
    });
  }

  // Rows -> cols: out[t][n] = sum_k in[t][k] W[k][n] over k in this core's row segment, to be
  // allreduced down each column. The output holds `parts` equal vectors of n_each elements side
  // by side, `cap` columns each.
  Reduction matmul_rows_in(const std::string& layer, StageArenas& s, int64_t tokens, int64_t in, int64_t weight,
                           int64_t cap, int64_t parts, int64_t n_each, int64_t align) {
    const int64_t width = cap * parts;
    count_zeros(layer, s, true, tokens, in, s.nr, model.d_model);
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const int64_t kn = segment(model.d_model, s.py, j).size(), nn = segment(n_each, s.px, i, align).size();
      const int64_t core = j * s.px + i;
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = a + s.part + t * width;
        std::fill_n(out, width, 0.0f);
        for (int64_t k = 0; k < kn; ++k) {
          const float xk = round_to_format(a[in + t * s.nr + k], activations);
          if (skip_weight_zeros || parts == 1) {
            accumulate_row(s, core, w, weight, width, k, xk, out, 0, nn);
          } else {
            for (int64_t p = 0; p < parts; ++p)
              accumulate_row(s, core, w, weight, width, k, xk, out, p * cap, p * cap + nn);
          }
        }
      }
    });
    return {s.part, tokens * width, false};
  }

  // Cols -> rows: the reverse orientation, to be allreduced along each row.
  Reduction matmul_cols_in(const std::string& layer, StageArenas& s, int64_t tokens, int64_t in, int64_t in_width,
                           int64_t k_total, int64_t weight) {
    count_zeros(layer, s, false, tokens, in, in_width, k_total);
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const int64_t kn = segment(k_total, s.px, i, k_total == model.d_model ? 2 : 1).size();
      const int64_t nn = segment(model.d_model, s.py, j).size();
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = a + s.part + t * s.nr;
        std::fill_n(out, s.nr, 0.0f);
        for (int64_t k = 0; k < kn; ++k)
          accumulate_row(s, j * s.px + i, w, weight, s.nr, k, round_to_format(a[in + t * in_width + k], activations),
                         out, 0, nn);
      }
    });
    return {s.part, tokens * s.nr, false};
  }

  // Attention in four steps, each ending in the plan's allreduce: scores (the new tokens' keys and
  // values appended to the row that owns their position, then each core's partial dot products
  // over its head-dimension segment), the running max, the softmax denominators, the weighted values.
  bool visible(const StageArenas& s, int64_t t, int64_t slot, int64_t j, int64_t first_position) const {
    return slot * s.py + j <= first_position + t;
  }

  Reduction attention_scores(StageArenas& s, int64_t tokens, int64_t first_position) {
    const int64_t hd = model.head_dim(), d = model.d_model, stride = model.n_heads * s.slots;
    for_cores(s, [&](float* w, float* a, int64_t, int64_t j) {
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t p = first_position + t;
        if (p % s.py != j) continue;
        const int64_t slot = p / s.py;
        for (int64_t e = 0; e < s.nc; ++e) {
          w[s.k_cache + slot * s.nc + e] = round_to_format(a[s.qkv + t * 3 * s.nc + s.nc + e], kv);
          w[s.v_cache + slot * s.nc + e] = round_to_format(a[s.qkv + t * 3 * s.nc + 2 * s.nc + e], kv);
        }
      }
    });
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t j) {
      const Segment seg = segment(d, s.px, i, 2);
      std::fill_n(a + s.scores, tokens * stride, 0.0f);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t slot = 0; visible(s, t, slot, j, first_position); ++slot)
          for (int64_t e = seg.begin; e < seg.end; ++e)
            a[s.scores + t * stride + (e / hd) * s.slots + slot] +=
                a[s.qkv + t * 3 * s.nc + (e - seg.begin)] * w[s.k_cache + slot * s.nc + (e - seg.begin)];
    });
    return {s.scores, tokens * stride, false};
  }

  Reduction attention_max(StageArenas& s, int64_t tokens, int64_t first_position) {
    const int64_t heads = model.n_heads, stride = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(model.head_dim()));
    for_cores(s, [&](float*, float* a, int64_t, int64_t j) {
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

  Reduction attention_sum(StageArenas& s, int64_t tokens, int64_t first_position) {
    const int64_t heads = model.n_heads, stride = heads * s.slots;
    const auto scale = 1.0f / std::sqrt(static_cast<float>(model.head_dim()));
    for_cores(s, [&](float*, float* a, int64_t, int64_t j) {
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

  Reduction attention_values(StageArenas& s, int64_t tokens) {
    const int64_t heads = model.n_heads, hd = model.head_dim(), d = model.d_model, stride = heads * s.slots;
    for_cores(s, [&](float* w, float* a, int64_t i, int64_t) {
      const Segment seg = segment(d, s.px, i, 2);
      for (int64_t t = 0; t < tokens; ++t) {
        float* out = a + s.o + t * s.nc;
        std::fill_n(out, s.nc, 0.0f);
        for (int64_t e = seg.begin; e < seg.end; ++e) {
          const int64_t hh = e / hd;
          const float inv = 1.0f / a[s.stats + tokens * heads + t * heads + hh];
          for (int64_t slot = 0; slot < s.slots; ++slot)
            out[e - seg.begin] +=
                a[s.scores + t * stride + hh * s.slots + slot] * inv * w[s.v_cache + slot * s.nc + (e - seg.begin)];
        }
      }
    });
    return {s.o, tokens * s.nc, false};
  }

  // Runs kernel(w, a, i, j) for every core: w = its resident weights and KV cache, a = its
  // activation area. A kernel sees nothing of any other core.
  template <typename Kernel>
  void for_cores(StageArenas& s, Kernel&& kernel) {
#pragma omp parallel for schedule(static) if (s.px * s.py > 64)
    for (int64_t c = 0; c < s.px * s.py; ++c)
      kernel(s.weights(c % s.px, c / s.px), s.arena(c % s.px, c / s.px), c % s.px, c / s.px);
  }

  void add_residual(StageArenas& s, int64_t tokens, int64_t bias) {
    for_cores(s, [&](float* w, float* a, int64_t, int64_t) {
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t n = 0; n < s.nr; ++n) a[s.x + t * s.nr + n] += a[s.part + t * s.nr + n] + w[bias + n];
    });
  }

  // --- the plan's steps ---------------------------------------------------------------------------
  //
  // Each step runs its kernel on every core of its stage (local work only), then the collective
  // the plan names for it, then whatever local work consumes the collective's result. A step the
  // plan leaves out is not run, and a collective it does not name does not happen: the values
  // follow the plan that is timed (DESIGN.md, "Locality is enforced").

  // A step's kind: its name without the layer prefix ("h.3.attn.c_attn" -> "attn.c_attn").
  std::string_view step_kind(const program::Step& step) const {
    std::string_view name = step.name;
    const std::string prefix = fmt::format("{}{}.", llama() ? "model.layers." : "h.", step.stage);
    if (name.starts_with(prefix)) name.remove_prefix(prefix.size());
    return name;
  }

  // RMSNorm is one step; LayerNorm two (".mean", then ".variance", which also scales).
  bool rms_norm_step(std::string_view kind) const {
    return kind == "input_layernorm" || kind == "post_attention_layernorm" || kind == "model.norm";
  }
  bool norm_scales(std::string_view kind) const { return kind.ends_with(".variance") || rms_norm_step(kind); }

  // The kernel before the collective; its Reduction is what an allreduce combines.
  Reduction run_kernel(std::string_view kind, StageArenas& s, int64_t tokens, int64_t first) {
    if (kind.ends_with(".mean") || norm_scales(kind)) return norm_sums(s, tokens, kind.ends_with(".variance"));
    if (kind == "attn.c_attn" || kind == "self_attn.qkv_proj")
      return matmul_rows_in(std::string(kind), s, tokens, s.h, s.w_qkv, s.nc, 3, model.d_model, 2);
    if (kind == "mlp.c_fc" || kind == "mlp.gate_up_proj")
      return matmul_rows_in(std::string(kind), s, tokens, s.h, s.w_fc, s.fc, s.fc_parts, model.d_ff, 1);
    if (kind == "lm_head") return matmul_rows_in("lm_head", s, tokens, s.h, s.w_lm, s.vc, 1, model.vocab_size, 1);
    if (kind == "attn.c_proj" || kind == "self_attn.o_proj")
      return matmul_cols_in(std::string(kind), s, tokens, s.o, s.nc, model.d_model, s.w_o);
    if (kind == "mlp.c_proj" || kind == "mlp.down_proj")
      return matmul_cols_in(std::string(kind), s, tokens, s.f, s.fc, model.d_ff, s.w_pr);
    if (kind == "attn.scores") return attention_scores(s, tokens, first);
    if (kind == "attn.max") return attention_max(s, tokens, first);
    if (kind == "attn.sum") return attention_sum(s, tokens, first);
    if (kind == "attn.values") return attention_values(s, tokens);
    if (kind == "rope")
      rope(s, tokens, first);
    else if (kind == "residual_1")
      add_residual(s, tokens, s.b_o);
    else if (kind == "residual_2")
      add_residual(s, tokens, s.b_pr);
    else if (kind == "gelu" || kind == "silu_mul")
      activation(s, tokens);
    else
      fail("the mesh data plane has no kernel for step '{}'", kind);
    return {};
  }

  // The local work that consumes a collective's result within the same step.
  void finish_kernel(std::string_view kind, StageArenas& s, int64_t tokens) {
    if (norm_scales(kind)) {
      const bool second = kind.starts_with("ln_2") || kind == "post_attention_layernorm";
      norm_scale(s, tokens, second ? s.ln2_g : s.ln1_g, second ? s.ln2_b : s.ln1_b);
    }
    if (kind == "attn.c_attn" || kind == "self_attn.qkv_proj")
      for_cores(s, [&](float* w, float* a, int64_t, int64_t) {
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t n = 0; n < 3 * s.nc; ++n)
            a[s.qkv + t * 3 * s.nc + n] = a[s.part + t * 3 * s.nc + n] + w[s.b_qkv + n];
      });
  }

  // GELU(c_fc + bias) or SiLU(gate) x up, into f.
  void activation(StageArenas& s, int64_t tokens) {
    for_cores(s, [&](float* w, float* a, int64_t, int64_t) {
      for (int64_t t = 0; t < tokens; ++t) {
        const float* in = a + s.part + t * s.fc_parts * s.fc;
        for (int64_t n = 0; n < s.fc; ++n)
          a[s.f + t * s.fc + n] =
              llama() ? in[n] / (1.0f + std::exp(-in[n])) * in[s.fc + n] : gelu(in[n] + w[s.b_fc + n]);
      }
    });
  }

  // Runs one step on `tokens` tokens at positions from `first`. StageTransfer and host steps are
  // run by the pass (run_pass), which owns the rows in flight between stages.
  void run_step(const program::Step& step, int64_t tokens, int64_t first) {
    StageArenas& s = stages.at(static_cast<size_t>(step.stage));
    const std::string_view kind = step_kind(step);
    const Reduction r = run_kernel(kind, s, tokens, first);
    if (step.pattern == program::Pattern::AllreduceX || step.pattern == program::Pattern::AllreduceY) {
      if (r.count == 0) fail("plan step '{}' names an allreduce but its kernel leaves nothing to reduce", step.name);
      allreduce(s, step.pattern == program::Pattern::AllreduceX, r.offset, r.count, r.max);
    }
    finish_kernel(kind, s, tokens);
  }
};

namespace {

// Plans every stage's arena and fills its weight tiles from the checkpoint, in the layouts of
// docs/mesh-mapping.md. Matrices are indexed W[k][n] (input k, output n) whatever the checkpoint's
// own orientation: GPT-2's Conv1D stores [in, out], nn.Linear stores [out, in].
void compress_tiles(StageArenas& s);

void build_stage(MeshDataPlane::State& st, StageArenas& s, int64_t layer) {
  const auto& m = st.model;
  const bool llama = st.llama();
  const int64_t d = m.d_model, hd = m.head_dim(), half = hd / 2, group = m.n_heads / m.n_kv_heads;
  s.px = s.region.width, s.py = s.region.height;
  s.nr = segment_capacity(d, s.py), s.nc = segment_capacity(d, s.px, 2), s.fc = segment_capacity(m.d_ff, s.px);
  s.vc = segment_capacity(m.vocab_size, s.px);
  s.fc_parts = llama ? 2 : 1;
  s.slots = segment_capacity(st.context, s.py);
  s.tokens = s.is_head ? 1 : st.chunk;
  int64_t cur = 0, act = 0;  // cursors in the resident area and in the activation area
  s.ln1_g = take(cur, s.nr), s.ln1_b = take(cur, s.nr);
  if (s.is_head) {
    s.w_lm = take(cur, s.nr * s.vc);
    s.x = take(act, s.nr), s.h = take(act, s.nr), s.part = take(act, s.vc), s.stats = take(act, 2);
  } else {
    s.ln2_g = take(cur, s.nr), s.ln2_b = take(cur, s.nr);
    s.w_qkv = take(cur, s.nr * 3 * s.nc), s.b_qkv = take(cur, 3 * s.nc);
    s.w_o = take(cur, s.nc * s.nr), s.b_o = take(cur, s.nr);
    s.w_fc = take(cur, s.nr * s.fc_parts * s.fc), s.b_fc = take(cur, s.fc_parts * s.fc);
    s.w_pr = take(cur, s.fc * s.nr), s.b_pr = take(cur, s.nr);
    s.k_cache = take(cur, s.slots * s.nc), s.v_cache = take(cur, s.slots * s.nc);
    const int64_t t = s.tokens;
    s.x = take(act, t * s.nr), s.h = take(act, t * s.nr), s.qkv = take(act, t * 3 * s.nc), s.o = take(act, t * s.nc);
    s.f = take(act, t * s.fc);
    s.part = take(act, t * std::max({3 * s.nc, s.fc_parts * s.fc, s.nr}));
    s.scores = take(act, t * m.n_heads * s.slots);
    s.stats = take(act, 2 * t * std::max<int64_t>(m.n_heads, 1));
  }
  s.weight_floats = cur, s.scratch_floats = act;
  s.resident.assign(static_cast<size_t>(s.px * s.py), std::vector<float>(static_cast<size_t>(cur), 0.0f));

  auto param = [&](const std::string& name) {
    const model::Tensor* t = st.weights->find(name);
    if (!t) fail("weights are missing '{}', which the plan for {} needs", name, m.name);
    return t->values.data();
  };
  // Head dimension stored at position r of a head: pairs (2i, 2i+1) hold (i, i + half).
  auto pair_adjacent = [&](int64_t r) { return r % 2 == 0 ? r / 2 : r / 2 + half; };
  const std::string p = (llama ? "model.layers." : "h.") + std::to_string(layer) + ".";
  for (int64_t j = 0; j < s.py; ++j) {
    const Segment rows = segment(d, s.py, j);
    for (int64_t i = 0; i < s.px; ++i) {
      float* w = s.weights(i, j);
      const Segment cols = segment(d, s.px, i, 2);
      auto copy_rows = [&](const std::string& name, int64_t offset) {
        std::copy(param(name) + rows.begin, param(name) + rows.end, w + offset);
      };
      const std::string norm1 = s.is_head ? (llama ? "model.norm" : "ln_f") : p + (llama ? "input_layernorm" : "ln_1");
      copy_rows(norm1 + ".weight", s.ln1_g);
      if (!llama) copy_rows(norm1 + ".bias", s.ln1_b);
      if (s.is_head) {
        const Segment vocab = segment(m.vocab_size, s.px, i);
        const float* out = param(llama && !m.tie_embeddings ? "lm_head.weight"
                                 : llama                    ? "model.embed_tokens.weight"
                                                            : "wte.weight");  // [V, d]
        for (int64_t k = rows.begin; k < rows.end; ++k)
          for (int64_t n = vocab.begin; n < vocab.end; ++n)
            w[s.w_lm + (k - rows.begin) * s.vc + (n - vocab.begin)] = out[n * d + k];
        continue;
      }
      const std::string norm2 = p + (llama ? "post_attention_layernorm" : "ln_2");
      copy_rows(norm2 + ".weight", s.ln2_g);
      if (!llama) copy_rows(norm2 + ".bias", s.ln2_b);
      const Segment ff = segment(m.d_ff, s.px, i);
      auto qkv_at = [&](int64_t k, int64_t part, int64_t n) -> float& {
        return w[s.w_qkv + (k - rows.begin) * 3 * s.nc + part * s.nc + (n - cols.begin)];
      };
      auto fc_at = [&](int64_t k, int64_t part, int64_t n) -> float& {
        return w[s.w_fc + (k - rows.begin) * s.fc_parts * s.fc + part * s.fc + (n - ff.begin)];
      };
      if (llama) {
        // q and k columns pair-adjacent within each head; k and v repeated for every query head
        // of their group (grouped-query attention).
        const float *wq = param(p + "self_attn.q_proj.weight"), *wk = param(p + "self_attn.k_proj.weight"),
                    *wv = param(p + "self_attn.v_proj.weight");
        for (int64_t k = rows.begin; k < rows.end; ++k)
          for (int64_t n = cols.begin; n < cols.end; ++n) {
            const int64_t head = n / hd, r = n % hd, kv = head / group;
            qkv_at(k, 0, n) = wq[(head * hd + pair_adjacent(r)) * d + k];
            qkv_at(k, 1, n) = wk[(kv * hd + pair_adjacent(r)) * d + k];
            qkv_at(k, 2, n) = wv[(kv * hd + r) * d + k];
          }
        const float* wo = param(p + "self_attn.o_proj.weight");  // [d out, d in]
        for (int64_t k = cols.begin; k < cols.end; ++k)
          for (int64_t n = rows.begin; n < rows.end; ++n)
            w[s.w_o + (k - cols.begin) * s.nr + (n - rows.begin)] = wo[n * d + k];
        const float *gate = param(p + "mlp.gate_proj.weight"), *up = param(p + "mlp.up_proj.weight");  // [ff, d]
        for (int64_t k = rows.begin; k < rows.end; ++k)
          for (int64_t n = ff.begin; n < ff.end; ++n) {
            fc_at(k, 0, n) = gate[n * d + k];
            fc_at(k, 1, n) = up[n * d + k];
          }
        const float* down = param(p + "mlp.down_proj.weight");  // [d, ff]
        for (int64_t k = ff.begin; k < ff.end; ++k)
          for (int64_t n = rows.begin; n < rows.end; ++n)
            w[s.w_pr + (k - ff.begin) * s.nr + (n - rows.begin)] = down[n * m.d_ff + k];
        continue;
      }
      const float* c_attn = param(p + "attn.c_attn.weight");  // [d, 3d]
      const float* c_attn_b = param(p + "attn.c_attn.bias");
      for (int64_t part = 0; part < 3; ++part) {
        for (int64_t k = rows.begin; k < rows.end; ++k)
          for (int64_t n = cols.begin; n < cols.end; ++n) qkv_at(k, part, n) = c_attn[k * 3 * d + part * d + n];
        for (int64_t n = cols.begin; n < cols.end; ++n)
          w[s.b_qkv + part * s.nc + (n - cols.begin)] = c_attn_b[part * d + n];
      }
      const float* w_o = param(p + "attn.c_proj.weight");  // [d, d]
      for (int64_t k = cols.begin; k < cols.end; ++k)
        for (int64_t n = rows.begin; n < rows.end; ++n)
          w[s.w_o + (k - cols.begin) * s.nr + (n - rows.begin)] = w_o[k * d + n];
      copy_rows(p + "attn.c_proj.bias", s.b_o);
      const float* w_fc = param(p + "mlp.c_fc.weight");  // [d, ff]
      for (int64_t k = rows.begin; k < rows.end; ++k)
        for (int64_t n = ff.begin; n < ff.end; ++n) fc_at(k, 0, n) = w_fc[k * m.d_ff + n];
      std::copy(param(p + "mlp.c_fc.bias") + ff.begin, param(p + "mlp.c_fc.bias") + ff.end, w + s.b_fc);
      const float* w_pr = param(p + "mlp.c_proj.weight");  // [ff, d]
      for (int64_t k = ff.begin; k < ff.end; ++k)
        for (int64_t n = rows.begin; n < rows.end; ++n)
          w[s.w_pr + (k - ff.begin) * s.nr + (n - rows.begin)] = w_pr[k * d + n];
      copy_rows(p + "mlp.c_proj.bias", s.b_pr);
    }
  }
  if (st.skip_weight_zeros) compress_tiles(s);
}

// Builds every core's compressed weight tiles from its dense ones (see SparseTile).
void compress_tiles(StageArenas& s) {
  struct Matrix {
    int64_t offset, rows, width;
  };
  std::vector<Matrix> matrices;
  if (s.is_head) {
    matrices = {{s.w_lm, s.nr, s.vc}};
  } else {
    matrices = {
        {s.w_qkv, s.nr, 3 * s.nc}, {s.w_o, s.nc, s.nr}, {s.w_fc, s.nr, s.fc_parts * s.fc}, {s.w_pr, s.fc, s.nr}};
  }
  s.sparse.assign(s.resident.size(), {});
  for (size_t c = 0; c < s.resident.size(); ++c) {
    const float* w = s.resident[c].data();
    for (const Matrix& m : matrices) {
      SparseTile& tile = s.sparse[c][m.offset];
      tile.row_start.push_back(0);
      for (int64_t k = 0; k < m.rows; ++k) {
        for (int64_t n = 0; n < m.width; ++n)
          if (const float v = w[m.offset + k * m.width + n]; v != 0.0f) {
            tile.column.push_back(static_cast<int32_t>(n));
            tile.value.push_back(v);
          }
        tile.row_start.push_back(static_cast<int32_t>(tile.value.size()));
      }
    }
  }
}

// RoPE angles in double, rounded to fp32, as the reference executor computes them.
void build_rope_tables(MeshDataPlane::State& st) {
  const auto& m = st.model;
  const int64_t hd = m.head_dim(), half = hd / 2;
  st.rope_cos.resize(static_cast<size_t>(st.context * half));
  st.rope_sin.resize(static_cast<size_t>(st.context * half));
  for (int64_t i = 0; i < half; ++i) {
    double inv_freq = 1.0 / std::pow(m.rope_theta, static_cast<double>(2 * i) / static_cast<double>(hd));
    if (m.rope_scaling) {  // Meta's Llama 3.1 apply_scaling()
      const auto& r = *m.rope_scaling;
      const double wavelen = 2 * std::numbers::pi / inv_freq, old = static_cast<double>(r.original_context_length);
      if (wavelen > old / r.low_freq_factor) {
        inv_freq /= r.factor;
      } else if (wavelen >= old / r.high_freq_factor) {
        const double smooth = (old / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        inv_freq = (1 - smooth) * inv_freq / r.factor + smooth * inv_freq;
      }
    }
    for (int64_t pos = 0; pos < st.context; ++pos) {
      const double angle = static_cast<double>(pos) * inv_freq;
      st.rope_cos[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::cos(angle));
      st.rope_sin[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::sin(angle));
    }
  }
}

}  // namespace

MeshDataPlane::MeshDataPlane(const program::Program& plan, const model::Weights& weights)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.model = ir::parse_model_config(plan.model_yaml, plan.model_origin);
  st.activations = parse_float_format(plan.precision.activations);
  st.kv = parse_float_format(plan.precision.kv);
  st.skip_weight_zeros = plan.skip_weight_zeros;
  st.skip_zero_activations = plan.skip_zero_activations;
  if (plan.batch != 1 || !plan.embedding || !plan.lm_head)
    fail(
        "{}: values are computed for a whole model serving one request; this plan is a pipeline stage or holds {} "
        "requests (run it timing-only: --no-numerics)",
        plan.model_origin, plan.batch);
  if (plan.stages.size() != static_cast<size_t>(st.model.n_layers + 1))
    fail("{}: the plan has {} stages but {} has {} layers + the LM head", plan.model_origin, plan.stages.size(),
         st.model.name, st.model.n_layers);
  st.weights = &weights;
  st.prefill_steps = plan.prefill, st.decode_steps = plan.decode;
  st.chunk = plan.prefill_chunk_tokens;
  st.context = plan.max_context;
  if (st.llama()) build_rope_tables(st);
  st.stages.resize(plan.stages.size());
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    st.stages[s].region = plan.stages[s].region;
    st.stages[s].is_head = s + 1 == plan.stages.size();
    build_stage(st, st.stages[s], static_cast<int64_t>(s));
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
  const int64_t d = st.model.d_model, vocab = st.model.vocab_size;
  if (n == 0) fail("forward() needs at least one token");
  if (st.position + n > st.context)
    fail("context overflow: {} cached + {} new tokens exceed the plan's context of {} tokens", st.position, n,
         st.context);
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab) fail("token id {} is outside the vocabulary (0..{})", t, vocab - 1);
  st.logits.assign(static_cast<size_t>((last_only ? 1 : n) * vocab), 0.0f);
  const auto table = [&](const char* name) {
    const model::Tensor* t = st.weights->find(name);
    if (!t) fail("weights are missing '{}'", name);
    return t->values.data();
  };
  const float* tokens_table = table(st.llama() ? "model.embed_tokens.weight" : "wte.weight");
  const float* positions_table = st.llama() ? nullptr : table("wpe.weight");
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
        StageArenas& s0 = st.stages.at(static_cast<size_t>(step.stage));
        for (int64_t j = 0; j < s0.py; ++j) {
          const Segment seg = segment(d, s0.py, j);
          for (int64_t i = 0; i < s0.px; ++i)
            for (int64_t t = 0; t < count; ++t)
              for (int64_t e = seg.begin; e < seg.end; ++e)
                s0.arena(i, j)[s0.x + t * s0.nr + (e - seg.begin)] =
                    tokens_table[tokens[static_cast<size_t>(begin + t)] * d + e] +
                    (positions_table ? positions_table[(first + t) * d + e] : 0.0f);
        }
      } else if (step.pattern == program::Pattern::StageTransfer) {
        in_flight[step.to_stage] = st.gather_rows(st.stages.at(static_cast<size_t>(step.stage)), count);
      } else {
        st.run_step(step, count, first);
      }
    }
    // The LM head's stage holds one token at a time: the prompt's last, or every one when asked.
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
          for (int64_t i = 0; i < s.px; ++i) {
            const Segment seg = segment(vocab, s.px, i);
            std::copy_n(s.arena(i, 0) + s.part, seg.size(), row + seg.begin);
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
