#include "tessera/target/mesh2d/mesh_compiler.hpp"

#include "tessera/compiler/lowering.hpp"
#include "tessera/compiler/request.hpp"
#include "tessera/ir/builders.hpp"

#include "tessera/target/mesh2d/layout.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

namespace tessera::compiler {

using program::Pattern;
using program::Step;

namespace {

constexpr int64_t kActivationBytes = 4;  // activations and partial sums are fp32
// Colours a core of a layer region uses: a two-level tree allreduce along each axis (two phases
// plus the root's broadcast: 3 each), the stage-to-stage transfer in and out (2), host I/O (2).
constexpr int64_t kRoutesPerCore = 3 + 3 + 2 + 2;

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Norm vectors and biases stay fp32 whatever the matrices' format (model/quantize.hpp).
constexpr int64_t kVectorBytes = 4;

// A weight matrix [k, n]. rows_in: the input is split over the region's rows (so the k split is
// over rows and the partial outputs are allreduced along each column, ending split over columns);
// otherwise the reverse. A mixture of experts' matrices are stored `copies` times (one per
// expert, every core holding its tile of each) and each token multiplies `per_token` of them.
struct Matmul {
  std::string name;
  int64_t k, n;
  bool rows_in;
  bool bias;
  const LoweredOp* op;  // its parts (q|k|v, gate|up) and what they feed
  int64_t copies = 1, per_token = 1;
};

struct StageKind {
  std::string name;
  bool is_layer;
  std::vector<Matmul> matmuls;
  int64_t norms;                       // norm layers in the stage
  int64_t norm_vectors;                // vectors per norm (LayerNorm: scale and shift; RMSNorm: scale)
  int64_t query_width = 0, group = 1;  // the attention's heads x head_dim, query heads per KV head
  int64_t head_dim = 1;
};

struct Shape {
  int64_t px, py;  // columns, rows
};

struct Footprint {
  int64_t weights, kv, activations;
  int64_t total() const { return weights + kv + activations; }
};

class Lowering {
 public:
  Lowering(const ir::ModelConfig& m, const LoweredModel& g, const arch::ArchSpec& a, const MeshCompileOptions& o)
      : m_(m),
        g_(g),
        a_(a),
        o_(o),
        storage_(a, o.precision),
        kv_bytes_(static_cast<int64_t>(storage_bits(o.precision.kv) / 8)),
        rate_(a.core.macs_per_cycle.at(o.precision.activations)) {
    layer_ = stage_kind("layer", true, g.layers.front().ops);
    head_ = stage_kind("head", false, g.head);
  }

  const WeightStorage& storage() const { return storage_; }
  int64_t kv_bytes() const { return kv_bytes_; }

  // Per-core capacities, as program/layout.hpp splits: n over the rows, or over the columns (the
  // model dimension with RoPE's pairs kept together; attention's tensors in whole KV groups).
  int64_t over_rows(int64_t n, Shape r) const { return program::segment_capacity(n, r.py); }
  int64_t over_cols(int64_t n, Shape r) const { return program::segment_capacity(n, r.px, n == m_.d_model ? 2 : 1); }
  // A projection's parts side by side over the columns: queries and keys/values as attention
  // splits them (layout.hpp), others as any vector.
  int64_t parts_over_cols(const LoweredOp& op, Shape r) const {
    int64_t cap = 0;
    for (size_t p = 0; p < op.part_widths.size(); ++p) {
      const int64_t w = op.part_widths[p], g = op.attention_group;
      switch (op.part_roles[p]) {
        case compiler::PartRole::Query:
          cap += program::query_capacity(w, r.px, g);
          break;
        case compiler::PartRole::KeyValue:
          cap += program::key_value_capacity(w * g, r.px, g);
          break;
        case compiler::PartRole::Other:
          cap += over_cols(w, r);
          break;
      }
    }
    return cap;
  }
  int64_t tile_k(const Matmul& mm, Shape r) const {
    if (mm.rows_in) return over_rows(mm.k, r);
    return mm.op->input_group > 1 ? program::query_capacity(mm.k, r.px, mm.op->input_group) : over_cols(mm.k, r);
  }
  int64_t tile_n(const Matmul& mm, Shape r) const {
    if (!mm.rows_in) return over_rows(mm.n, r);
    // An expert's gate|up: two d_ff-wide parts side by side.
    return mm.op->kind == LoweredKind::Experts ? 2 * over_cols(mm.n / 2, r) : parts_over_cols(*mm.op, r);
  }
  const StageKind& layer() const { return layer_; }
  const StageKind& head() const { return head_; }

  int64_t weight_bytes(const StageKind& s) const {
    int64_t n = s.norms * s.norm_vectors * m_.d_model * kVectorBytes;
    for (const auto& mm : s.matmuls)
      n += mm.copies * storage_.bytes(mm.k * mm.n, mm.k) + (mm.bias ? mm.n * kVectorBytes : 0);
    return n;
  }

  // What a core of a region holding `layers` such stages (several layers per region) keeps: each
  // one's weights, KV cache and saved activations, and one set of activation buffers, which they
  // take turns with. The LM head only ever sees one token at a time (prefill needs only the last
  // token's logits; an encoder's head sees every token).
  Footprint footprint(const StageKind& s, Shape r, int64_t tokens, int64_t layers = 1) const {
    if (!s.is_layer && !g_.encoder) tokens = 1;
    Footprint f{0, 0, 0};
    int64_t widest_partial = 0, cols_activations = 0;
    for (const auto& mm : s.matmuls) {
      f.weights += mm.copies * storage_.bytes(tile_k(mm, r) * tile_n(mm, r), mm.k) +
                   (mm.bias ? tile_n(mm, r) * kVectorBytes : 0);
      widest_partial = std::max(widest_partial, mm.per_token * tile_n(mm, r));
      // An expert's gate|up outputs, and their SiLU x up, for each of a token's experts.
      if (mm.rows_in)
        cols_activations += mm.per_token * tile_n(mm, r) * (mm.op->kind == LoweredKind::Experts ? 3 : 2) / 2;
    }
    f.weights += s.norms * s.norm_vectors * cdiv(m_.d_model, r.py) * kVectorBytes;
    int64_t per_token = 2 * cdiv(m_.d_model, r.py) + widest_partial + cols_activations;
    if (s.is_layer) {
      const int64_t slots = cdiv(o_.prompt_tokens + o_.max_new_tokens, r.py);
      f.kv = o_.requests_in_flight * 2 * slots * program::key_value_capacity(s.query_width, r.px, s.group) * kv_bytes_;
      per_token += program::heads_per_column(s.query_width, r.px, s.group, s.head_dim) * slots;  // its heads' scores
    }
    f.activations = 2 * tokens * per_token * kActivationBytes;  // double-buffered
    f.weights *= o_.weight_copies * layers;
    f.kv *= layers;
    f.activations += layers * cdiv(s.is_layer ? o_.saved_bytes_per_layer : o_.saved_bytes_head, r.px * r.py);
    return f;
  }

  bool fits(const StageKind& s, Shape r, int64_t tokens, int64_t layers = 1) const {
    return static_cast<double>(footprint(s, r, tokens, layers).total()) <= a_.usable_sram_per_core();
  }

  // Multiply-accumulates of the stage's projections per token.
  double macs_per_token(const StageKind& s) const {
    double macs = 0;
    for (const auto& mm : s.matmuls) macs += static_cast<double>(mm.per_token * mm.k * mm.n);
    return macs;
  }

  // A rough decode-time estimate (cycles) for choosing region shapes: local GEMV work plus a
  // two-level tree allreduce per matmul. The simulator, not this, reports the time.
  double estimate_cycles(const StageKind& s, Shape r) const {
    const double rate = rate_ / (storage_.mac_fraction() * (1 + storage_.unpack_ops()));
    const double stage_latency = 2 * a_.link.ramp_latency_cycles + 1;
    double cycles = 0;
    for (const auto& mm : s.matmuls) {
      const int64_t ks = mm.rows_in ? r.py : r.px, ns = mm.rows_in ? r.px : r.py;
      const double line = static_cast<double>(ks);
      cycles += static_cast<double>(mm.per_token * cdiv(mm.k, ks)) *
                (static_cast<double>(cdiv(mm.n, ns)) / rate + a_.core.vector_op_cycles);
      cycles += static_cast<double>(cdiv(mm.n, ns)) / (a_.link.bytes_per_cycle / 4) +
                (2 * std::ceil(std::sqrt(line)) + 1) * stage_latency + 2 * line * a_.link.hop_latency_cycles;
    }
    return cycles;
  }

  std::vector<Step> stage_steps(const StageKind& s, int32_t stage, Shape r, int64_t tokens, bool prefill,
                                bool last_stage_before_head) const;
  void add_attention(std::vector<Step>& out, const LoweredOp& op, const std::string& prefix, int32_t stage, Shape r,
                     int64_t tokens, int64_t cores) const;
  void add_experts(std::vector<Step>& out, const LoweredOp& op, int32_t stage, Shape r, int64_t tokens,
                   int64_t cores) const;

 private:
  // A stage's matrices and norms as the mesh holds them. A projection reading the residual stream
  // (split over the region's rows) splits k over rows; one reading a split tensor (heads, d_ff)
  // splits k over columns. Grouped-query attention keeps one K/V per KV head (layout.hpp).
  static StageKind stage_kind(const std::string& name, bool is_layer, const std::vector<LoweredOp>& ops) {
    StageKind s{name, is_layer, {}, 0, 0};
    for (const auto& op : ops) {
      if (op.kind == LoweredKind::Norm) s.norms++, s.norm_vectors = op.vectors;
      if (op.kind == LoweredKind::Attention)
        s.query_width = op.heads * op.head_dim, s.group = op.heads / op.kv_heads, s.head_dim = op.head_dim;
      if (op.kind == LoweredKind::Projection)
        s.matmuls.push_back({op.local, op.k, op.n, !op.split_input, op.bias, &op});
      if (op.kind == LoweredKind::Experts) {
        // Every core holds its tile of every expert: gate|up from the rows layout, down from the cols.
        s.matmuls.push_back({op.local + ".gate_up", op.k, 2 * op.n, true, false, &op, op.experts, op.top_k});
        s.matmuls.push_back({op.local + ".down", op.n, op.k, false, false, &op, op.experts, op.top_k});
      }
    }
    return s;
  }

  const Matmul& matmul(const StageKind& s, const LoweredOp& op, const std::string& suffix = "") const {
    for (const Matmul& mm : s.matmuls)
      if (mm.name == op.local + suffix) return mm;
    fail("projection '{}' differs from the first layer's (every layer of a plan has the same shape)", op.name);
  }

  // LayerNorm allreduces the mean, then the variance around it (two passes, as the data plane
  // computes it); RMSNorm allreduces the mean square once. The residual stream is normalised down
  // the columns (the rows layout); a split tensor (BERT's head) along the rows (the cols layout).
  void add_norm(std::vector<Step>& out, const LoweredOp& op, int32_t stage, Shape r, int64_t tokens,
                int64_t cores) const {
    const std::string& name = op.name;
    const bool layer_norm = op.op == ir::OpKind::LayerNorm, cols = op.split_input;
    const int64_t seg = cols ? cdiv(op.width, r.px) : cdiv(op.width, r.py), line = cols ? r.px : r.py;
    for (int pass = 0; pass < (layer_norm ? 2 : 1); ++pass) {
      Step st;
      st.name = name + (layer_norm ? (pass == 0 ? ".mean" : ".variance") : ""), st.stage = stage, st.op = "norm";
      st.kernel = layer_norm ? (pass == 0 ? "layernorm.mean" : "layernorm.variance") : "rmsnorm", st.node = name;
      const int64_t ops = pass + 1 == (layer_norm ? 2 : 1) ? 4 : 1;
      st.elementwise = tokens * seg * ops;
      st.vector_ops = program::vector_instructions(ops, tokens, seg);
      st.sram_bytes = cores * tokens * seg * kActivationBytes * 2;
      st.pattern = cols ? Pattern::AllreduceX : Pattern::AllreduceY;
      st.words = tokens;
      st.group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(line))));
      out.push_back(st);
    }
  }

  void add_matmul(std::vector<Step>& out, const Matmul& mm, int32_t stage, Shape r, int64_t tokens,
                  int64_t cores) const {
    const int64_t ks = mm.rows_in ? r.py : r.px;
    Step st;
    st.name = mm.name, st.stage = stage, st.op = "matmul", st.kernel = "projection";
    const double performed = storage_.mac_fraction();
    // A mixture of experts' token multiplies each of its experts' tiles: `uses` products per token.
    const int64_t uses = tokens * mm.per_token, used = std::min(uses, mm.copies);
    st.macs = static_cast<int64_t>(std::ceil(static_cast<double>(uses * tile_k(mm, r) * tile_n(mm, r)) * performed));
    st.total_macs = static_cast<int64_t>(std::ceil(static_cast<double>(uses * mm.k * mm.n) * performed));
    // Stored weights are unpacked once per step into the MAC dtype and reused for every token (at
    // most `used` experts' tiles: as many as a step's tokens can choose).
    st.elementwise = (mm.bias ? tokens * tile_n(mm, r) : 0) +
                     static_cast<int64_t>(std::ceil(static_cast<double>(used * tile_k(mm, r) * tile_n(mm, r)) *
                                                    performed * storage_.unpack_ops()));
    // One multiply-add instruction per row of the tile and token, along the tile's row (WaferLLM's
    // GEMV), or per element of the tile along the tokens where they are more (a long chunk); the
    // unpacking, a pass over each weight row per operation; the bias, one add per token.
    st.vector_ops = program::vector_instructions(tile_k(mm, r), uses, used * tile_n(mm, r)) +
                    static_cast<int64_t>(std::ceil(static_cast<double>(used * tile_k(mm, r)) * storage_.unpack_ops())) +
                    (mm.bias ? program::vector_instructions(1, tokens, tile_n(mm, r)) : 0);
    // Every token reads the stored weights once and an activation per MAC; outputs are written once.
    st.sram_bytes = uses * storage_.bytes(mm.k * mm.n, mm.k) + st.total_macs * kActivationBytes +
                    cores * uses * tile_n(mm, r) * kActivationBytes;
    st.pattern = mm.rows_in ? Pattern::AllreduceY : Pattern::AllreduceX;
    // An expert's down projection: each core weights its experts' partial sums and adds them, so
    // one allreduce carries a token's mixture.
    st.words = (mm.rows_in ? uses : tokens) * tile_n(mm, r);
    if (!mm.rows_in && mm.per_token > 1)
      st.elementwise += uses * tile_n(mm, r), st.vector_ops += program::vector_instructions(1, uses, tile_n(mm, r));
    // Each partial output is final on its core once its column of the tile is done, so the
    // reduction chain can carry it while the core computes the next (WaferLLM's MeshGEMV).
    st.overlap = true;
    st.group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(ks))));
    out.push_back(st);
  }

  // GELU (tanh or erf form) 8 operations per element; SiLU 4, and one more to gate.
  void add_activation(std::vector<Step>& out, const LoweredOp& op, int32_t stage, Shape r, int64_t tokens,
                      int64_t cores) const {
    const int64_t ops = op.op == ir::OpKind::Gelu ? 8 : 4 + (op.gated ? 1 : 0), seg = cdiv(op.width, r.px);
    add_elementwise(out, op, stage, tokens * seg * ops, program::vector_instructions(ops, tokens, seg), cores);
  }

  void add_elementwise(std::vector<Step>& out, const LoweredOp& op, int32_t stage, int64_t per_core,
                       int64_t instructions, int64_t cores) const {
    Step st;
    st.name = op.name, st.stage = stage, st.op = "elementwise", st.node = op.name;
    st.kernel = op.kind == LoweredKind::Rope         ? "rope"
                : op.kind == LoweredKind::Activation ? "activation"
                                                     : lowered_kind_name(op.kind);
    st.elementwise = per_core;
    st.vector_ops = instructions;
    st.sram_bytes = cores * per_core * kActivationBytes * 3;
    out.push_back(st);
  }

  const ir::ModelConfig& m_;
  const LoweredModel& g_;
  const arch::ArchSpec& a_;
  const MeshCompileOptions& o_;
  WeightStorage storage_;
  int64_t kv_bytes_;
  double rate_;  // MACs per cycle per core in the activations' dtype
  StageKind layer_, head_;
};

std::vector<Step> Lowering::stage_steps(const StageKind& s, int32_t stage, Shape r, int64_t tokens, bool prefill,
                                        bool last_stage_before_head) const {
  std::vector<Step> out;
  const int64_t cores = r.px * r.py;
  if (!s.is_layer) {
    // A decoder's LM head needs only the last token's logits, so in prefill it runs once, on one
    // token; an encoder's head runs on every token.
    const int64_t n = g_.encoder ? tokens : 1;
    for (const auto& op : g_.head) {
      if (op.kind == LoweredKind::Norm) add_norm(out, op, stage, r, n, cores);
      if (op.kind == LoweredKind::Activation) add_activation(out, op, stage, r, n, cores);
      if (op.kind == LoweredKind::Projection) {
        add_matmul(out, matmul(s, op), stage, r, n, cores);
        out.back().node = op.name;
      }
    }
    Step host;
    host.name = "logits_to_host", host.stage = stage, host.op = "host";
    host.pattern = Pattern::HostOut;
    host.host_bytes = n * g_.lm_head().n * kActivationBytes;
    out.push_back(host);
    for (auto& st : out) st.last_chunk_only = prefill && !g_.encoder;
    return out;
  }
  const LoweredLayer& layer = g_.layers.at(static_cast<size_t>(stage));
  const std::string& p = layer.prefix;
  for (const auto& op : layer.ops) {
    switch (op.kind) {
      case LoweredKind::Embedding:
        fail("a mesh layer stage has no embedding lookup ('{}'): tokens are embedded on the host", op.name);
      case LoweredKind::Experts:
        add_experts(out, op, stage, r, tokens, cores);
        break;
      case LoweredKind::Norm:
        add_norm(out, op, stage, r, tokens, cores);
        break;
      case LoweredKind::Projection:
        add_matmul(out, matmul(s, op), stage, r, tokens, cores);
        out.back().name = op.name, out.back().node = op.name;
        break;
      case LoweredKind::Rope: {
        // Rotates the q and k columns each core holds: 6 operations per pair.
        const int64_t columns = program::query_capacity(s.query_width, r.px, s.group) +
                                program::key_value_capacity(s.query_width, r.px, s.group);
        add_elementwise(out, op, stage, tokens * 3 * columns, program::vector_instructions(6, tokens, cdiv(columns, 2)),
                        cores);
        break;
      }
      case LoweredKind::Attention:
        add_attention(out, op, p, stage, r, tokens, cores);
        break;
      case LoweredKind::Add:
      case LoweredKind::Mul: {
        const int64_t seg = cdiv(op.width, op.split_output ? r.px : r.py);
        add_elementwise(out, op, stage, tokens * seg, program::vector_instructions(1, tokens, seg), cores);
        break;
      }
      case LoweredKind::Activation:
        add_activation(out, op, stage, r, tokens, cores);
        break;
    }
  }
  Step transfer;
  transfer.name = p + "to_next_stage", transfer.stage = stage, transfer.op = "transfer";
  transfer.pattern = Pattern::StageTransfer;
  transfer.to_stage = stage + 1;
  // Only the last token's activations go on to a decoder's LM head.
  transfer.words = (last_stage_before_head && prefill && !g_.encoder ? 1 : tokens) * cdiv(m_.d_model, r.py);
  out.push_back(transfer);
  return out;
}

// Attention over the cached context: keys and values are split by dimension over columns and by
// position over rows, so each core holds ceil(context / rows) positions ("slots").
void Lowering::add_attention(std::vector<Step>& out, const LoweredOp& op, const std::string& p, int32_t stage, Shape r,
                             int64_t tokens, int64_t cores) const {
  const int64_t group = op.heads / op.kv_heads, d = op.heads * op.head_dim;
  const int64_t dx = program::query_capacity(d, r.px, group), kx = program::key_value_capacity(d, r.px, group);
  // Each KV head's scores are summed over the columns holding its queries (a segment of the row),
  // and a core keeps, and takes the softmax of, the scores of its own heads only.
  const std::vector<program::ColumnSpan> spans = program::kv_head_columns(d, r.px, group, op.head_dim);
  const int64_t heads = program::heads_per_column(d, r.px, group, op.head_dim);
  int64_t widest_span = 0;
  for (const auto& span : spans) widest_span = std::max(widest_span, span.last - span.first + 1);
  Step scores;
  scores.name = p + "attn.scores", scores.stage = stage, scores.op = "attention";
  scores.kernel = "attention.scores", scores.node = op.name;
  scores.macs_per_slot = tokens * dx;
  // Per position and token, a dot product along each head's dimensions on the core.
  scores.vector_ops_per_slot = tokens * cdiv(dx, op.head_dim);
  scores.total_macs_per_slot = tokens * d * r.py;
  // Each query dimension meets its KV head's key, read once for the group.
  scores.sram_bytes_per_slot = cores * tokens * (kx * kv_bytes_ + dx * kActivationBytes);
  scores.pattern = Pattern::AllreduceX;
  scores.words_per_slot = tokens * group;  // a segment carries its KV head's query heads
  scores.group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(widest_span))));
  if (spans.size() > 1 || spans.front().first != 0 || spans.front().last != r.px - 1)
    for (const auto& span : spans)
      scores.segments.push_back({static_cast<int32_t>(span.first), static_cast<int32_t>(span.last)});
  out.push_back(scores);
  // Softmax over positions spread down the columns: allreduce the max, then the sum of exponentials.
  for (const char* part : {"attn.max", "attn.sum"}) {
    Step softmax;
    softmax.name = p + part, softmax.stage = stage, softmax.op = "attention", softmax.node = op.name;
    softmax.kernel = std::string(part) == "attn.max" ? "attention.max" : "attention.sum";
    softmax.elementwise_per_slot = tokens * heads * (std::string(part) == "attn.max" ? 1 : 2);
    softmax.vector_ops = tokens * heads * (std::string(part) == "attn.max" ? 1 : 2);  // along the positions
    softmax.sram_bytes_per_slot = cores * tokens * heads * kActivationBytes;
    softmax.pattern = Pattern::AllreduceY;
    softmax.words = tokens * heads;
    softmax.group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(r.py))));
    out.push_back(softmax);
  }
  Step values = scores;
  values.name = p + "attn.values", values.kernel = "attention.values";
  values.pattern = Pattern::AllreduceY;
  values.words = tokens * dx;
  values.words_per_slot = 0;
  values.segments.clear();
  values.group = out.back().group;
  out.push_back(values);
}

// A mixture of experts (docs/mesh-mapping.md, "Mixtures of experts"): every core of the region
// holds its tile of every expert, as a dense MLP's, so a token's experts run on all the region's
// cores and no token moves: the rows layout already gives every column the token. The router's
// logits (a projection, split over the columns) are gathered along each row so every core picks
// the same top_k; each core multiplies its tiles of the chosen experts; the down projection's
// partial sums are weighted and added on the core, so one allreduce carries the mixture.
void Lowering::add_experts(std::vector<Step>& out, const LoweredOp& op, int32_t stage, Shape r, int64_t tokens,
                           int64_t cores) const {
  const auto step = [&](const std::string& part, const std::string& kind) {
    Step st;
    st.name = op.name + "." + part, st.stage = stage, st.op = kind, st.kernel = "experts." + part, st.node = op.name;
    return st;
  };
  Step route = step("route", "experts");
  // Each token: the top_k of `experts` logits by comparison, then a softmax over them.
  route.elementwise = tokens * (op.experts * op.top_k + 3 * op.top_k);
  route.vector_ops = tokens * (op.top_k + 3);  // a pass over the logits per choice, three over the chosen
  route.sram_bytes = cores * tokens * op.experts * kActivationBytes * 2;
  route.pattern = Pattern::AllreduceX;
  route.words = tokens * op.experts;
  route.group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(r.px))));
  out.push_back(route);
  const Matmul& gate_up = matmul(layer_, op, ".gate_up");
  add_matmul(out, gate_up, stage, r, tokens, cores);
  out.back().name = op.name + ".gate_up", out.back().kernel = "experts.gate_up", out.back().node = op.name;
  Step activation = step("activation", "elementwise");
  const int64_t hidden = tokens * op.top_k * tile_n(gate_up, r) / 2;
  activation.elementwise = hidden * 5;  // SiLU 4 operations per element, and one to gate
  activation.vector_ops = program::vector_instructions(5, tokens * op.top_k, tile_n(gate_up, r) / 2);
  activation.sram_bytes = cores * hidden * kActivationBytes * 3;
  out.push_back(activation);
  add_matmul(out, matmul(layer_, op, ".down"), stage, r, tokens, cores);
  out.back().name = op.name + ".down", out.back().kernel = "experts.down", out.back().node = op.name;
}

// " (or ... weights: --weights-format F)" for the widest format the arch stores that would fit by
// total bytes, if the current one does not.
std::string smaller_format_hint(const arch::ArchSpec& arch, const PrecisionPolicy& policy, double weight_bytes,
                                double needed, double usable) {
  const double bits = storage_bits(policy.weights, policy.scales, policy.group);
  for (const std::string& f : weight_formats()) {
    const double ratio = storage_bits(f, "auto", policy.group) / bits;
    if (ratio >= 1 || std::find(arch.core.weight_formats.begin(), arch.core.weight_formats.end(), f) ==
                          arch.core.weight_formats.end())
      continue;
    if (needed - weight_bytes * (1 - ratio) <= usable)
      return fmt::format(" (or {} weights: --weights-format {})", f, f);
  }
  return "";
}

struct Placement {
  Shape slot;
  int64_t layer_slots, head_slots;
  int64_t layers_per_region;          // consecutive layers sharing each layer region
  std::vector<arch::Region> regions;  // each layer's in order, then the head's
  double estimate;
};

// The placements worth simulating: the fastest by the rough estimate.
constexpr size_t kPlacementsScored = 6;

// The stages packed band by band into a grid of `bands` x `per_band` slots, snaking so consecutive
// stages stay adjacent: `n_layers` of `kl` slots, then the head's `kh` (0: none). Empty if they do
// not fit.
std::vector<arch::Region> pack(const arch::ArchSpec& a, Shape slot, int64_t bands, int64_t per_band, int64_t n_layers,
                               int64_t kl, int64_t kh) {
  std::vector<arch::Region> regions;
  int64_t band = 0, used = 0;
  for (int64_t s = 0; s < n_layers + (kh > 0 ? 1 : 0); ++s) {
    const int64_t k = s < n_layers ? kl : kh;
    if (used + k > per_band) ++band, used = 0;
    if (band >= bands) return {};
    const int64_t slot_index = band % 2 == 0 ? used : per_band - used - k;
    regions.push_back({a.usable.x + slot_index * slot.px, a.usable.y + band * slot.py, k * slot.px, slot.py});
    used += k;
  }
  return regions;
}

// Whether pack() fits, without building the regions: whole bands of layers, then the head in the
// last band's remaining slots or a band of its own.
bool packs(int64_t bands, int64_t per_band, int64_t n_layers, int64_t kl, int64_t kh) {
  const int64_t per = per_band / kl;
  if (per == 0 || (kh > per_band)) return false;
  const int64_t layer_bands = (n_layers + per - 1) / per;
  const int64_t last_used = (n_layers - (layer_bands - 1) * per) * kl;
  const int64_t needed = layer_bands + (kh > 0 && last_used + kh > per_band ? 1 : 0);
  return needed <= bands;
}

// Searches slot grids (bands x slots per band) and the slots each layer region and the head take
// (at least what they need to fit; more gives each core less work, so a machine with more SRAM
// keeps every placement a smaller one had) for the stages' regions, each layer region holding
// `per_region` consecutive layers; the candidates the rough estimate ranks best are scored with
// the timing model itself (`score`: cycles of one decode pass, or of a training step's slowest
// stage; an encoder's: cycles of its one pass, `tokens_per_pass` tokens, which every region must
// hold), and the best of those wins.
std::optional<Placement> place(const Lowering& low, const arch::ArchSpec& a, int64_t n_layers, int64_t per_region,
                               bool head, bool training, int64_t tokens_per_pass,
                               const std::function<double(const Placement&)>& score) {
  const int64_t n_regions = cdiv(n_layers, per_region);
  const int64_t width = a.usable.width, height = a.usable.height;
  struct Candidate {
    Shape slot;
    int64_t bands, per_band, kl, kh;
    double estimate;
  };
  // The kPlacementsScored best by estimate, in order; ties keep the one found first.
  std::vector<Candidate> candidates;
  const auto keep = [&](const Candidate& c) {
    if (candidates.size() == kPlacementsScored && !(c.estimate < candidates.back().estimate)) return;
    const auto at = std::upper_bound(candidates.begin(), candidates.end(), c.estimate,
                                     [](double e, const Candidate& x) { return e < x.estimate; });
    candidates.insert(at, c);
    if (candidates.size() > kPlacementsScored) candidates.pop_back();
  };
  const int64_t max_split = 48;
  for (int64_t bands = 1; bands <= std::min(height, max_split); ++bands) {
    for (int64_t per_band = 1; per_band <= std::min(width, max_split); ++per_band) {
      const Shape slot{width / per_band, height / bands};
      auto slots_needed = [&](const StageKind& s, int64_t layers) -> int64_t {
        for (int64_t k = 1; k <= per_band; ++k)
          if (low.fits(s, {k * slot.px, slot.py}, tokens_per_pass, layers)) return k;
        return 0;
      };
      const int64_t kl_fit = slots_needed(low.layer(), per_region), kh_fit = head ? slots_needed(low.head(), 1) : 0;
      if (kl_fit == 0 || (head && kh_fit == 0)) continue;
      // Decode: the latency of a token through every stage. Training: the pace of the slowest
      // stage, its products' MACs per core (the most cores per stage rank first).
      const auto cores = [&](int64_t k) { return static_cast<double>(k * slot.px * slot.py); };
      const auto layer_estimate = [&](int64_t k) {
        return training ? low.macs_per_token(low.layer()) / cores(k)
                        : static_cast<double>(n_layers) * low.estimate_cycles(low.layer(), {k * slot.px, slot.py});
      };
      const auto head_estimate = [&](int64_t k) {
        if (!head) return 0.0;
        return training ? low.macs_per_token(low.head()) / cores(k)
                        : low.estimate_cycles(low.head(), {k * slot.px, slot.py});
      };
      std::vector<double> head_estimates;
      for (int64_t kh = kh_fit; kh <= (head ? per_band : 0); ++kh) head_estimates.push_back(head_estimate(kh));
      for (int64_t kl = kl_fit; kl <= per_band && packs(bands, per_band, n_regions, kl, kh_fit); ++kl) {
        const double layers = layer_estimate(kl);
        for (int64_t kh = kh_fit; kh <= (head ? per_band : 0) && packs(bands, per_band, n_regions, kl, kh); ++kh) {
          const double h = head ? head_estimates[static_cast<size_t>(kh - kh_fit)] : 0.0;
          keep({slot, bands, per_band, kl, kh, training ? std::max(layers, h) : layers + h});
        }
      }
    }
  }
  if (candidates.empty()) return std::nullopt;
  std::vector<Placement> scored;
  for (const Candidate& c : candidates) {
    const std::vector<arch::Region> packed = pack(a, c.slot, c.bands, c.per_band, n_regions, c.kl, c.kh);
    Placement p{c.slot, c.kl, c.kh, per_region, {}, 0};
    for (int64_t l = 0; l < n_layers; ++l) p.regions.push_back(packed[static_cast<size_t>(l / per_region)]);
    if (head) p.regions.push_back(packed.back());
    p.estimate = score(p);
    scored.push_back(std::move(p));
  }
  return *std::min_element(scored.begin(), scored.end(),
                           [](const Placement& x, const Placement& y) { return x.estimate < y.estimate; });
}

}  // namespace

MeshCompileResult compile_for_mesh(const ir::ModelConfig& model, const std::string& model_yaml,
                                   const std::string& model_origin, const arch::ArchSpec& arch,
                                   const std::string& arch_yaml, const std::string& arch_origin,
                                   const MeshCompileOptions& options) {
  const int64_t context = check_request(model, arch, options.prompt_tokens, options.max_new_tokens, options.precision);
  const int64_t n_layers = options.slice.layer_count(model);
  const bool head = options.slice.lm_head;
  if (n_layers < 1 || n_layers > model.n_layers)
    fail("a pipeline stage of {} layers: {} has {}", n_layers, model.name, model.n_layers);
  if (options.requests_in_flight < 1) fail("batch must be >= 1, got {}", options.requests_in_flight);
  if (options.slice.head_shards != 1) fail("mesh plans keep the LM head whole on one wafer");
  if (options.slice.expert_shards != 1) fail("mesh plans keep every expert of a layer on one wafer");
  std::optional<LoweredModel> own;
  const LoweredModel& lowered =
      options.lowered ? *options.lowered : own.emplace(lower_graph(ir::build_model_graph(model)));
  const Lowering low(model, lowered, arch, options);

  MeshCompileResult result;
  // A candidate's decode pass as the simulator times it: the first layer stage's steps (its
  // collectives, and its transfer to the stage after it where that stage is) for every layer, and
  // the LM head's local steps, on the candidate's own regions. With several layers per region, a
  // layer hands over to the next on the same cores except at the region's end.
  const auto score = [&](const Placement& c) {
    program::Program trial;
    trial.arch_yaml = arch_yaml, trial.arch_origin = arch_origin;
    trial.model_yaml = model_yaml, trial.model_origin = model_origin;
    trial.precision = options.precision;
    trial.skip_zero_activations = arch.sparsity.activations;
    trial.max_context = context;
    // Stages: the first layer, the second where it shares the first's region, the stage after the
    // first region (the last transfer's destination), the LM head.
    const int64_t per_region = c.layers_per_region;
    const bool shared = per_region > 1;
    std::vector<arch::Region> regions(1, c.regions.front());
    if (shared) regions.push_back(c.regions[1]);
    const bool has_next = std::ssize(c.regions) > per_region;
    if (has_next) regions.push_back(c.regions[static_cast<size_t>(per_region)]);
    if (head) regions.push_back(c.regions.back());
    for (const arch::Region& region : regions) {
      program::Stage stage;
      stage.region = region;
      stage.context_split = region.height;
      trial.stages.push_back(stage);
    }
    const Shape layer{c.layer_slots * c.slot.px, c.slot.py}, lm{c.head_slots * c.slot.px, c.slot.py};
    if (options.place_for_training) {
      // One prompt's forward pass through the first layer stage; the LM head's, which computes
      // every token's logits in training, scaled from it by MACs per core.
      trial.prompt_tokens = trial.prefill_chunk_tokens = options.prompt_tokens;
      for (auto& st : low.stage_steps(low.layer(), 0, layer, options.prompt_tokens, true, false))
        if (st.pattern != Pattern::StageTransfer || has_next) trial.prefill.push_back(std::move(st));
      const double layer_cycles = sim::prefill_stage_cycles(trial, options.placement_model)[0];
      const double head_cycles = head
                                     ? layer_cycles * low.macs_per_token(low.head()) / low.macs_per_token(low.layer()) *
                                           static_cast<double>(layer.px * layer.py) / static_cast<double>(lm.px * lm.py)
                                     : 0.0;
      return std::max(layer_cycles, head_cycles);
    }
    if (lowered.encoder) {
      // An encoder's one pass: the whole sequence through the first layer stage, then through
      // the head, stage after stage (one chunk: no stage overlaps another).
      trial.prompt_tokens = trial.prefill_chunk_tokens = options.prompt_tokens;
      const auto head_stage = static_cast<int32_t>(trial.stages.size()) - 1;
      for (auto& st : low.stage_steps(low.layer(), 0, layer, options.prompt_tokens, true, false))
        if (st.pattern != Pattern::StageTransfer || has_next) trial.prefill.push_back(std::move(st));
      if (head)
        for (auto& st : low.stage_steps(low.head(), head_stage, lm, options.prompt_tokens, true, false))
          if (st.pattern != Pattern::HostOut) trial.prefill.push_back(std::move(st));
      const std::vector<double> cycles = sim::prefill_stage_cycles(trial, options.placement_model);
      return static_cast<double>(n_layers) * cycles[0] + (head ? cycles[static_cast<size_t>(head_stage)] : 0.0);
    }
    const int32_t last_layer_stage = shared ? 1 : 0;
    for (int32_t s = 0; s <= last_layer_stage; ++s)
      for (auto& st : low.stage_steps(low.layer(), s, layer, 1, false, head && n_layers == 1))
        if (st.pattern != Pattern::StageTransfer || s < last_layer_stage || has_next)
          trial.decode.push_back(std::move(st));
    const auto head_stage = static_cast<int32_t>(trial.stages.size()) - 1;
    if (head)
      for (auto& st : low.stage_steps(low.head(), head_stage, lm, 1, false, false))
        if (st.pattern != Pattern::HostOut) trial.decode.push_back(std::move(st));
    const std::vector<double> cycles = sim::decode_stage_cycles(trial, options.placement_model);
    const auto layers_ending_a_region = static_cast<double>(cdiv(n_layers, per_region));
    return (static_cast<double>(n_layers) - layers_ending_a_region) * cycles[0] +
           layers_ending_a_region * cycles[static_cast<size_t>(last_layer_stage)] +
           (head ? cycles[static_cast<size_t>(head_stage)] : 0.0);
  };
  // Each layer gets a region of its own where that fits; otherwise consecutive layers share
  // regions, the fewest per region that fit (sharing serialises their prefill chunks and
  // lengthens each layer's collectives). Training keeps one layer per region.
  std::optional<Placement> placement;
  for (int64_t per_region = 1; !placement && per_region <= (options.place_for_training ? 1 : n_layers); ++per_region)
    if (per_region == 1 || cdiv(n_layers, per_region) < cdiv(n_layers, per_region - 1))
      placement = place(low, arch, n_layers, per_region, head, options.place_for_training,
                        lowered.encoder ? options.prompt_tokens : 1, score);
  if (!placement) {
    const double usable = static_cast<double>(arch.usable.cores()) * arch.usable_sram_per_core();
    const double layer_bytes = static_cast<double>(low.weight_bytes(low.layer()));
    const double head_bytes = head ? static_cast<double>(low.weight_bytes(low.head())) : 0.0;
    // One key and one value per KV head dimension.
    const double kv_per_layer_token = 2.0 * static_cast<double>(options.requests_in_flight * low.layer().query_width /
                                                                low.layer().group * low.kv_bytes());
    const auto layers = static_cast<double>(n_layers), tokens = static_cast<double>(context);
    const double kv_bytes = layers * kv_per_layer_token * tokens;
    const double needed = layers * layer_bytes + head_bytes + kv_bytes;
    const int64_t layers_that_fit =
        std::max<int64_t>(0, static_cast<int64_t>((usable - head_bytes) / (layer_bytes + kv_per_layer_token * tokens)));
    const auto context_that_fits = static_cast<int64_t>(
        std::max(0.0, (usable - layers * layer_bytes - head_bytes) / (layers * kv_per_layer_token)));
    // What one layer would face with the wafer split evenly between the stages.
    const int64_t stages = n_layers + (head ? 1 : 0);
    const auto per_band = std::max<int64_t>(
        1, std::min<int64_t>(arch.usable.width,
                             static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(stages * arch.usable.width) /
                                                                      static_cast<double>(arch.usable.height))))));
    const int64_t bands = std::min<int64_t>(arch.usable.height, cdiv(stages, per_band));
    const Shape even{arch.usable.width / per_band, std::max<int64_t>(1, arch.usable.height / bands)};
    // An encoder holds its whole sequence's activations in every region at once.
    const int64_t pass = lowered.encoder ? options.prompt_tokens : 1;
    const Footprint f = low.footprint(low.layer(), even, pass);
    const std::string encoder_note =
        lowered.encoder ? fmt::format(" (an encoder's one pass of {} tokens)", pass) : std::string();
    const std::string per_stage = fmt::format(
        "split evenly, each layer gets {}x{} cores and needs {:.1f} KiB per core{} (weights {:.1f}, KV cache {:.1f}, "
        "activations {:.1f}) of {:.1f} KiB usable, {:.1f} KiB over",
        even.px, even.py, static_cast<double>(f.total()) / 1024, encoder_note, static_cast<double>(f.weights) / 1024,
        static_cast<double>(f.kv) / 1024, static_cast<double>(f.activations) / 1024, arch.usable_sram_per_core() / 1024,
        std::max(0.0, static_cast<double>(f.total()) - arch.usable_sram_per_core()) / 1024);
    const std::string total = needed > usable ? fmt::format("{:.2f} GB over", (needed - usable) / 1e9)
                                              : std::string(
                                                    "enough in total, but not once split into regions (one per layer, "
                                                    "or consecutive layers sharing one)");
    result.status = FitFailure{
        model.name,
        arch.name,
        "SRAM per core",
        fmt::format("each layer's region of {}x{} cores, with the wafer split evenly", even.px, even.py),
        static_cast<double>(f.total()),
        arch.usable_sram_per_core(),
        "bytes",
        fmt::format("{} layers of {:.1f} MB ({}) + LM head {:.1f} MB + KV cache {:.1f} MB for {} tokens need {:.2f} GB "
                    "of the {:.2f} GB of SRAM left after {:.0f} KiB per core of reserved space on {} cores ({}); {}",
                    n_layers, layer_bytes / 1e6, options.precision.describe(), head_bytes / 1e6, kv_bytes / 1e6,
                    context, needed / 1e9, usable / 1e9, arch.core.reserved_bytes / 1024, arch.usable.cores(), total,
                    per_stage),
        fmt::format(
            "counting total bytes, would fit: {}, {}, or a machine with more cores or SRAM{}",
            layers_that_fit > 0 ? fmt::format("at most {} layers", layers_that_fit) : std::string("not even one layer"),
            context_that_fits > 0 ? fmt::format("a context of at most {} tokens", context_that_fits)
                                  : std::string("no context length (the weights alone are too large)"),
            smaller_format_hint(arch, options.precision, layers * layer_bytes + head_bytes, needed, usable))};
    return result;
  }

  program::Program& p = result.program;
  p.arch_yaml = arch_yaml, p.arch_origin = arch_origin;
  p.model_yaml = model_yaml, p.model_origin = model_origin;
  p.precision = options.precision;
  p.weight_bits = low.storage().bits(model.d_model);
  p.skip_weight_zeros = low.storage().skips_zeros();
  p.skip_zero_activations = arch.sparsity.activations;
  p.prompt_tokens = options.prompt_tokens;
  p.max_new_tokens = options.max_new_tokens;
  p.max_context = context;
  p.batch = options.requests_in_flight;
  p.layers = n_layers, p.embedding = options.slice.embedding, p.lm_head = head;
  if (model.n_experts > 0) p.routing = routing_name(options.routing);
  const int64_t per_region = placement->layers_per_region;
  auto chunk_fits = [&](int64_t t) {
    const auto shape = [&](int64_t s) {
      const arch::Region& reg = placement->regions[static_cast<size_t>(s)];
      return Shape{reg.width, reg.height};
    };
    for (int64_t s = 0; s < n_layers; s += per_region)
      if (!low.fits(low.layer(), shape(s), t, std::min(per_region, n_layers - s))) return false;
    return !head || low.fits(low.head(), shape(n_layers), t);
  };
  // The plan's stages and steps for prefill chunks of `chunk` tokens (false: a stage needs more
  // routes than a core has; result.status says which).
  const auto lay_out = [&](program::Program& plan, int64_t chunk) {
    plan.prefill_chunk_tokens = chunk;
    plan.stages.clear(), plan.prefill.clear(), plan.decode.clear();
    for (size_t s = 0; s < placement->regions.size(); ++s) {
      const bool is_layer = s < static_cast<size_t>(n_layers);
      const StageKind& kind = is_layer ? low.layer() : low.head();
      const arch::Region& reg = placement->regions[s];
      const Footprint f = low.footprint(kind, {reg.width, reg.height}, chunk);
      program::Stage st;
      st.name = is_layer ? fmt::format("layer {}", s) : "lm_head";
      st.region = reg;
      st.weight_bytes = f.weights, st.kv_cache_bytes = f.kv;
      // Layers sharing a region share its activation buffers (program.hpp, Stage).
      st.activation_bytes = !is_layer || s % static_cast<size_t>(per_region) == 0 ? f.activations : 0;
      st.routes = kRoutesPerCore;
      st.context_split = reg.height;
      st.total_weight_bytes = low.weight_bytes(kind);
      if (st.routes > arch.core.routes) {
        result.status = FitFailure{model.name,
                                   arch.name,
                                   "routes per core",
                                   fmt::format("stage '{}'", st.name),
                                   static_cast<double>(st.routes),
                                   static_cast<double>(arch.core.routes),
                                   "routes",
                                   fmt::format("stage '{}' needs {} routes per core but {} cores have {}", st.name,
                                               st.routes, arch.name, arch.core.routes),
                                   ""};
        return false;
      }
      plan.stages.push_back(st);
    }
    Step host_in;
    host_in.name = options.slice.embedding ? "embedding_from_host" : "activations_from_previous_chip";
    host_in.stage = 0, host_in.op = "host";
    host_in.pattern = Pattern::HostIn;
    host_in.host_bytes = chunk * model.d_model * kActivationBytes;
    plan.prefill.push_back(host_in);
    host_in.host_bytes = model.d_model * kActivationBytes;
    plan.decode.push_back(host_in);
    for (size_t s = 0; s < placement->regions.size(); ++s) {
      const bool is_layer = s < static_cast<size_t>(n_layers);
      const StageKind& kind = is_layer ? low.layer() : low.head();
      const Shape shape{placement->regions[s].width, placement->regions[s].height};
      const bool before_head = head && s + 1 == static_cast<size_t>(n_layers);
      for (auto& st : low.stage_steps(kind, static_cast<int32_t>(s), shape, chunk, true, before_head))
        plan.prefill.push_back(st);
      for (auto& st : low.stage_steps(kind, static_cast<int32_t>(s), shape, 1, false, before_head))
        plan.decode.push_back(st);
    }
    if (!head) {
      // A pipeline stage without the LM head hands every token's activations to the next chip
      // through the host I/O instead of to a next stage on this wafer.
      for (auto* phase : {&plan.prefill, &plan.decode}) {
        Step& out = phase->back();
        const int64_t tokens = phase == &plan.prefill ? chunk : 1;
        out.name = "activations_to_next_chip", out.op = "host", out.pattern = Pattern::HostOut;
        out.words = 0, out.to_stage = -1;
        out.host_bytes = tokens * model.d_model * kActivationBytes;
      }
    }
    return true;
  };
  // The prefill chunk: of the sizes whose activations fit every region (the prompt, halved until
  // one fits, and each half of that down to one token), the one with which the timing model
  // finishes the prompts of all requests in flight first: the first one's prefill, and each other
  // one once the busiest layer stage is free (a closed batch, as served throughput counts it; one
  // request: its time to first token). Larger chunks share each step's fixed latency (tree levels,
  // hops, ramps) among more tokens, so they keep the busiest stage busy for less; smaller ones fill
  // the pipeline of layer stages sooner.
  if (options.prefill_chunk_tokens < 0 || options.prefill_chunk_tokens > options.prompt_tokens)
    fail("a prefill chunk of {} tokens: give 1..{} (the prompt), or 0 to let the compiler choose",
         options.prefill_chunk_tokens, options.prompt_tokens);
  if (lowered.encoder) {
    // Every query of an encoder sees every key: the whole sequence is one chunk, each layer's
    // attention over all of it at once.
    if (options.prefill_chunk_tokens != 0 && options.prefill_chunk_tokens != options.prompt_tokens)
      fail("{} is an encoder (every token attends to every other): its {} tokens are one chunk, not {}", model.name,
           options.prompt_tokens, options.prefill_chunk_tokens);
    if (!chunk_fits(options.prompt_tokens)) {
      int64_t fits = options.prompt_tokens;
      while (fits > 1 && !chunk_fits(fits)) fits = (fits + 1) / 2;
      fail(
          "{} is an encoder (every token attends to every other), so its {} tokens are one pass through each layer; "
          "their activations do not fit every region of this placement on {} ({}{}); use a shorter sequence or a "
          "machine with more SRAM per core",
          model.name, options.prompt_tokens, arch.name, chunk_fits(fits) ? "about " : "not even one token",
          chunk_fits(fits) ? fmt::format("{} tokens fit", fits) : std::string());
    }
    lay_out(p, options.prompt_tokens);  // a failure is in result.status
    return result;
  }
  if (options.prefill_chunk_tokens > 0) {
    if (!chunk_fits(options.prefill_chunk_tokens))
      fail("prefill chunks of {} tokens do not fit the activation buffers of every region of this placement",
           options.prefill_chunk_tokens);
    lay_out(p, options.prefill_chunk_tokens);  // a failure is in result.status
    return result;
  }
  int64_t largest = options.prompt_tokens;
  while (largest > 1 && !chunk_fits(largest)) largest = (largest + 1) / 2;
  std::vector<int64_t> chunks{largest};
  while (chunks.back() > 1) chunks.push_back((chunks.back() + 1) / 2);
  if (!lay_out(p, largest)) return result;
  // (A training step runs whole sequences, not prompt chunks: it keeps the largest.)
  if (chunks.size() > 1 && !options.place_for_training) {
    program::Program trial = p;
    trial.max_new_tokens = 1;  // the prompt only
    sim::TimingOptions timing;
    timing.fabric = options.placement_model;
    const auto prompts_done = [&] {
      const sim::MeshReport r = sim::simulate_mesh_timing(trial, timing);
      return r.time_to_first_token_s + static_cast<double>(options.requests_in_flight - 1) * r.prefill_interval_s();
    };
    double fastest = prompts_done();
    int64_t best = largest;
    for (size_t c = 1; c < chunks.size(); ++c) {
      lay_out(trial, chunks[c]);
      if (const double done = prompts_done(); done < fastest) fastest = done, best = chunks[c];
    }
    if (best != largest) lay_out(p, best);
  }
  return result;
}

}  // namespace tessera::compiler
