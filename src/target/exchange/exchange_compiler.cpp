#include "tessera/target/exchange/exchange_compiler.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "tessera/compiler/lowering.hpp"
#include "tessera/compiler/routing.hpp"

#include <optional>
#include "tessera/compiler/request.hpp"
#include "tessera/ir/builders.hpp"

namespace tessera::compiler {

using program::BspWork;
using program::Superstep;

namespace {

double cdiv(double a, double b) { return std::ceil(a / b); }

constexpr double kPartialBytes = 4;  // partial sums, softmax statistics and the residual stream are fp32

struct Matrix {
  std::string name;
  int64_t k, n;
  bool bias;
};

// How one matrix is split over the tiles: k over pk tiles, n over pn.
struct Split {
  int64_t pk = 1, pn = 1;
};

class ExchangeLowering {
 public:
  ExchangeLowering(const ir::ModelConfig& m, const LoweredModel& g, const arch::ArchSpec& a,
                   const ExchangeCompileOptions& o)
      : m_(m),
        g_(g),
        a_(a),
        o_(o),
        storage_(a, o.precision),
        tiles_(static_cast<double>(a.usable.cores())),
        act_bytes_(storage_bits(o.precision.activations) / 8),
        kv_bytes_(storage_bits(o.precision.kv) / 8),
        rate_(a.core.macs_per_cycle.at(o.precision.activations)),
        ops_rate_(a.core.macs_per_cycle.count("fp32") ? a.core.macs_per_cycle.at("fp32") : rate_) {
    for (const LoweredOp& op : g.layers.front().ops) {
      if (op.kind == LoweredKind::Projection) layer_.push_back({op.local, op.k, op.n, op.bias});
      if (op.kind == LoweredKind::Experts) {
        // This chip's share of the experts: expert e on shard e % expert_shards.
        experts_ = (op.experts + o.slice.expert_shards - 1) / o.slice.expert_shards;
        const std::string stem = op.local + ".";
        expert_matrices_ = {{stem + "w1_w3", op.k, 2 * op.n, false}, {stem + "w2", op.n, op.k, false}};
      }
    }
    // The head's projections: whole, but for the LM head's shard (the last).
    const LoweredOp& lm_head = g.lm_head();
    for (const LoweredOp& op : g.head)
      if (op.kind == LoweredKind::Projection)
        head_.push_back(
            {op.name, op.k, &op == &lm_head ? (op.n + o.slice.head_shards - 1) / o.slice.head_shards : op.n, op.bias});
    for (const Matrix& mx : layer_) splits_[mx.name] = choose_split(mx, a_.usable.cores());
    for (const Matrix& mx : head_) splits_[mx.name] = choose_split(mx, a_.usable.cores());
    // Each expert's matrices on a group of its own: 1/experts of the tiles.
    for (const Matrix& mx : expert_matrices_) splits_[mx.name] = choose_split(mx, a_.usable.cores() / experts_);
    // Vectors (norms, biases) in fp32, and the tables a chip holds: token embeddings are looked
    // up on the host (as on the wafer) and stream in; other tables (GPT-2's positions) stay on the
    // pipeline's first chip.
    using Place = Parameter::Place;
    for (const auto& p : g.parameters) {
      const auto bytes = static_cast<double>(p.elements) * (p.k > 0 ? storage_.bits(p.k) / 8 : 4);
      if (p.place == Place::Layer && p.layer == 0 && p.k == 0) layer_vector_bytes_ += bytes;
      if (p.place == Place::Head && p.k == 0) head_vector_bytes_ += bytes;
      if (p.place == Place::Embedding && !p.token_table) table_bytes_ += bytes;
    }
  }

  const WeightStorage& storage() const { return storage_; }
  int64_t layers() const { return o_.slice.layer_count(m_); }

  // --- memory, per tile -------------------------------------------------------------------------

  double block_bytes(const Matrix& mx) const {
    const Split s = splits_.at(mx.name);
    return cdiv(static_cast<double>(mx.k), static_cast<double>(s.pk)) *
           cdiv(static_cast<double>(mx.n), static_cast<double>(s.pn)) * storage_.bits(mx.k) / 8;
  }

  // Each matrix's blocks sit on pk * pn tiles, starting where the previous matrix's ended, so a
  // tile holds that fraction of a block per matrix on average.
  double weight_bytes_per_tile() const {
    double per_tile = 0;
    for (const Matrix& mx : layer_) per_tile += block_bytes(mx) * used_fraction(mx) * static_cast<double>(layers());
    for (const Matrix& mx : expert_matrices_)
      per_tile += block_bytes(mx) * used_fraction(mx) * static_cast<double>(experts_ * layers());
    per_tile += static_cast<double>(layers()) * layer_vector_bytes_ / tiles_;
    if (o_.slice.embedding) per_tile += table_bytes_ / tiles_;
    // The LM head (its shard) is on the last chip.
    if (o_.slice.lm_head) {
      for (const Matrix& mx : head_) per_tile += block_bytes(mx) * used_fraction(mx);
      per_tile += head_vector_bytes_ / tiles_;
    }
    return per_tile;
  }

  double chip_weight_bytes() const {
    double bytes = 0;
    for (const Matrix& mx : layer_)
      bytes += static_cast<double>(layers()) * static_cast<double>(mx.k * mx.n) * storage_.bits(mx.k) / 8;
    for (const Matrix& mx : expert_matrices_)
      bytes += static_cast<double>(experts_ * layers()) * static_cast<double>(mx.k * mx.n) * storage_.bits(mx.k) / 8;
    if (o_.slice.lm_head)
      for (const Matrix& mx : head_) bytes += static_cast<double>(mx.k * mx.n) * storage_.bits(mx.k) / 8;
    return bytes;
  }

  // (request, KV head) pairs, and how many tiles share the positions of one pair.
  double units() const { return static_cast<double>(o_.micro_batch * m_.n_kv_heads); }
  double units_per_tile() const { return std::max(1.0, cdiv(units(), tiles_)); }
  double tiles_per_unit() const { return std::max(1.0, std::floor(tiles_ / units())); }

  // Every resident request's cache, spread as attention spreads the pairs of a batch.
  double kv_bytes_per_tile(int64_t context) const {
    const auto resident =
        static_cast<double>((o_.resident_requests > 0 ? o_.resident_requests : o_.micro_batch) * m_.n_kv_heads);
    const double per_tile = std::max(1.0, cdiv(resident, tiles_)),
                 sharing = std::max(1.0, std::floor(tiles_ / resident));
    return static_cast<double>(layers()) * per_tile * cdiv(static_cast<double>(context), sharing) * 2 *
           static_cast<double>(m_.head_dim()) * kv_bytes_;
  }

  // The largest live buffers of one superstep with `tokens` per request: a matmul's input slice,
  // its partial outputs and their reduction buffer, or attention's scores; plus the residual
  // stream (double-buffered).
  double activation_bytes_per_tile(int64_t tokens, int64_t context) const {
    const double rows = static_cast<double>(o_.micro_batch * tokens);
    double widest = 0;
    std::vector<Matrix> all = layer_;
    if (o_.slice.lm_head) all.insert(all.end(), head_.begin(), head_.end());
    all.insert(all.end(), expert_matrices_.begin(), expert_matrices_.end());
    for (const Matrix& mx : all) {
      const Split s = splits_.at(mx.name);
      // An expert gets at most every token once.
      const bool in_head = std::any_of(head_.begin(), head_.end(), [&](const Matrix& h) { return h.name == mx.name; });
      const double r = in_head && !g_.encoder ? static_cast<double>(o_.micro_batch) : rows;
      const double out = cdiv(static_cast<double>(mx.n), static_cast<double>(s.pn));
      widest = std::max(widest, r * (cdiv(static_cast<double>(mx.k), static_cast<double>(s.pk)) * act_bytes_ +
                                     2 * out * kPartialBytes));
    }
    const double group = static_cast<double>(m_.n_heads / m_.n_kv_heads);
    const double scores = units_per_tile() * static_cast<double>(tokens) * group *
                          cdiv(static_cast<double>(context), tiles_per_unit()) * kPartialBytes;
    const double stream = 2 * cdiv(rows * static_cast<double>(m_.d_model), tiles_) * kPartialBytes;
    return std::max(widest, scores) + stream;
  }

  // --- supersteps -------------------------------------------------------------------------------

  // One matmul over its pk x pn tiles, and the reduction of the partial sums when k is split.
  void matmul(std::vector<Superstep>& out, const std::string& prefix, const Matrix& mx, int64_t rows) const {
    const Split s = splits_.at(mx.name);
    const auto r = static_cast<double>(rows), kb = cdiv(static_cast<double>(mx.k), static_cast<double>(s.pk)),
               nb = cdiv(static_cast<double>(mx.n), static_cast<double>(s.pn));
    const double density = storage_.mac_fraction();
    Superstep st;
    st.name = prefix + mx.name, st.op = "matmul", st.tiles = s.pk * s.pn, st.k_parts = s.pk;
    const auto used = static_cast<double>(st.tiles);
    st.tile.exchange_bytes = r * kb * act_bytes_;
    st.tile.macs = r * kb * nb * density;
    st.tile.ops = storage_.unpack_ops() * kb * nb * density + (s.pk == 1 && mx.bias ? r * nb : 0);
    st.tile.sram_bytes = block_bytes(mx) + r * kb * act_bytes_ + r * nb * kPartialBytes;
    st.total = {r * static_cast<double>(mx.k * mx.n) * density, st.tile.ops * used, st.tile.sram_bytes * used,
                st.tile.exchange_bytes * used};
    out.push_back(st);
    if (s.pk == 1) return;
    // Reduce-scatter: each of the pk tiles sharing an output block ends with 1/pk of it.
    Superstep red;
    red.name = prefix + mx.name + ".reduce", red.op = "reduce", red.tiles = st.tiles;
    const double slice = cdiv(nb, static_cast<double>(s.pk));
    red.tile.exchange_bytes = static_cast<double>(s.pk - 1) * r * slice * kPartialBytes;
    red.tile.ops = static_cast<double>(s.pk - 1) * r * slice + (mx.bias ? r * slice : 0);
    red.tile.sram_bytes = 2 * red.tile.exchange_bytes + r * slice * kPartialBytes;
    red.total = {0, red.tile.ops * used, red.tile.sram_bytes * used, red.tile.exchange_bytes * used};
    out.push_back(red);
  }

  // A norm's statistics (`words` per row) gathered over the tiles holding a row in two supersteps
  // (to sqrt(tiles) group leaders, then back), then applied locally.
  void norm(std::vector<Superstep>& out, const std::string& name, int64_t rows, double words) const {
    const auto r = static_cast<double>(rows), d = static_cast<double>(m_.d_model);
    const double per_tile = cdiv(r * d, tiles_), tiles_per_row = std::max(1.0, std::floor(tiles_ / r));
    const double fan_in = tiles_per_row > 1 ? std::ceil(std::sqrt(tiles_per_row)) : 0;
    for (const char* part : {".gather", ".apply"}) {
      Superstep st;
      st.name = name + part, st.op = "norm", st.tiles = static_cast<int64_t>(std::min(tiles_, r * d));
      st.tile.exchange_bytes = fan_in * words * kPartialBytes * std::max(1.0, r / tiles_);
      st.tile.ops = per_tile * (std::string(part) == ".gather" ? 2 : 3);
      st.tile.sram_bytes = per_tile * kPartialBytes * 2;
      const auto used = static_cast<double>(st.tiles);
      st.total = {0, st.tile.ops * used, st.tile.sram_bytes * used, st.tile.exchange_bytes * used};
      out.push_back(st);
    }
  }

  void elementwise(std::vector<Superstep>& out, const std::string& name, double elements, double ops_each) const {
    Superstep st;
    st.name = name, st.op = "elementwise", st.sync = false;
    st.tiles = static_cast<int64_t>(std::min(tiles_, elements));
    st.tile.ops = cdiv(elements, tiles_) * ops_each;
    st.tile.sram_bytes = cdiv(elements, tiles_) * kPartialBytes * 3;
    const auto used = static_cast<double>(st.tiles);
    st.total = {0, st.tile.ops * used, st.tile.sram_bytes * used, 0};
    out.push_back(st);
  }

  // `tokens` new queries per request after `positions` cached ones (the *_per_position terms):
  // each tile scores its share of a (request, KV head) pair's positions, then the partial softmax
  // results are combined over the tiles sharing the pair (sqrt-fan-in tree).
  void attention(std::vector<Superstep>& out, const std::string& prefix, const LoweredOp& op, int64_t tokens) const {
    const auto n = static_cast<double>(tokens), hd = static_cast<double>(op.head_dim),
               group = static_cast<double>(op.heads / op.kv_heads), upt = units_per_tile(), tpu = tiles_per_unit();
    Superstep st;
    st.name = prefix + "attention", st.op = "attention";
    st.tiles = static_cast<int64_t>(std::min(tiles_, units() * tpu));
    st.position_parts = static_cast<int64_t>(tpu);
    const auto used = static_cast<double>(st.tiles);
    // Queries to every tile of their pair; new keys and values to the tiles that will hold them.
    st.tile.exchange_bytes = upt * n * (group * hd * act_bytes_ + 2 * hd * kv_bytes_ / tpu);
    // q.k and p.v for each query of the group against each held position (causal within the
    // chunk: a triangle; an encoder's every pair).
    const double within = (op.causal ? n * (n + 1) / 2 : n * n) / tpu;
    st.tile.macs = upt * within * 2 * group * hd;
    st.tile_per_position.macs = upt * n / tpu * 2 * group * hd;
    st.tile.ops = upt * within * group * 4;
    st.tile_per_position.ops = upt * n / tpu * group * 4;
    st.tile.sram_bytes = upt * n * (group * hd * act_bytes_ + 2 * hd * kv_bytes_);
    st.tile_per_position.sram_bytes = upt * (2 * hd * kv_bytes_ + n * group * kPartialBytes) / tpu;
    st.total = {st.tile.macs * used, st.tile.ops * used, st.tile.sram_bytes * used, st.tile.exchange_bytes * used};
    st.total_per_position = {st.tile_per_position.macs * used, st.tile_per_position.ops * used,
                             st.tile_per_position.sram_bytes * used, 0};
    out.push_back(st);
    if (tpu <= 1) return;
    Superstep comb;
    comb.name = prefix + "attention.combine", comb.op = "attention", comb.tiles = st.tiles;
    comb.tile.exchange_bytes = upt * n * group * (hd + 2 * std::ceil(std::sqrt(tpu))) * kPartialBytes;
    comb.tile.ops = 3 * comb.tile.exchange_bytes / kPartialBytes;
    comb.tile.sram_bytes = 2 * comb.tile.exchange_bytes;
    comb.total = {0, comb.tile.ops * used, comb.tile.sram_bytes * used, comb.tile.exchange_bytes * used};
    out.push_back(comb);
  }

  // A mixture of experts over the tiles: each expert's gate|up and down matrices on its own group
  // of tiles (1/experts of them), every token's activation exchanged to the groups of its top_k
  // experts (the matmul's exchange in), and the outputs exchanged back to the residual stream's
  // tiles, weighted and summed. The busiest expert's group sets the pace: its tokens under the
  // assumed routing (`loads`); the totals count every routed token. With the experts split over
  // a group of chips (ModelSlice::expert_shards), this chip holds its share of them, the busiest
  // expert (on some chip of the group) still sets the pace, and the totals are its share of the
  // group's; the group's allreduce over the links is the system's (system/system.cpp).
  void experts(std::vector<Superstep>& out, const std::string& prefix, const LoweredOp& op, int64_t rows,
               const ExpertLoads& loads) const {
    const int64_t busiest = loads.busiest_device.empty() ? 0 : loads.busiest_device.front();
    const auto shards = static_cast<double>(o_.slice.expert_shards);
    const double assignments = static_cast<double>(rows * op.top_k) / shards, f = static_cast<double>(op.n),
                 d = static_cast<double>(op.k);
    // The busiest group's supersteps, run by every group with tokens: totals as if each were as
    // busy (an upper bound), except the MACs, which are every routed token's.
    const auto on_every_group = [&](const Matrix& mx) {
      const size_t first = out.size();
      matmul(out, prefix, mx, busiest);
      for (size_t i = first; i < out.size(); ++i) {
        Superstep& st = out[i];
        const bool product = st.op == "matmul";
        st.op = product ? "experts" : st.op;
        st.tiles = static_cast<int64_t>(
            std::min(tiles_, static_cast<double>(st.tiles) * std::ceil(loads.experts_used_anywhere / shards)));
        const auto used = static_cast<double>(st.tiles);
        st.total = {product ? assignments * static_cast<double>(mx.k * mx.n) * storage_.mac_fraction() : 0,
                    st.tile.ops * used, st.tile.sram_bytes * used, st.tile.exchange_bytes * used};
      }
    };
    on_every_group(expert_matrices_.front());
    elementwise(out, prefix + op.local + ".silu_mul", assignments * f, 5);
    on_every_group(expert_matrices_.back());
    Superstep combine;
    combine.name = prefix + op.local + ".combine", combine.op = "reduce";
    combine.tiles = static_cast<int64_t>(std::min(tiles_, static_cast<double>(rows) * d));
    combine.tile.exchange_bytes = cdiv(assignments * d, tiles_) * kPartialBytes;
    combine.tile.ops = 2 * cdiv(assignments * d, tiles_);
    combine.tile.sram_bytes = 2 * combine.tile.exchange_bytes;
    const auto used = static_cast<double>(combine.tiles);
    combine.total = {0, combine.tile.ops * used, combine.tile.sram_bytes * used, combine.tile.exchange_bytes * used};
    out.push_back(combine);
  }

  // One op of the lowered graph as supersteps over `rows` tokens of all requests.
  void lower(std::vector<Superstep>& out, const LoweredOp& op, const std::string& prefix, int64_t tokens, int64_t rows,
             const ExpertLoads& routed) const {
    const auto r = static_cast<double>(rows), width = static_cast<double>(op.width);
    switch (op.kind) {
      case LoweredKind::Experts:
        experts(out, prefix, op, rows, routed);
        return;
      case LoweredKind::Embedding: {
        // Each token's embedding row arrives from the host into the tiles of the residual stream
        // (other tables, GPT-2's positions, are added there).
        if (!o_.slice.embedding) return;
        Superstep emb;
        emb.name = "embedding_from_host", emb.op = "embedding";
        emb.tiles = static_cast<int64_t>(std::min(tiles_, r * width));
        emb.tile.exchange_bytes = cdiv(r * width, tiles_) * kPartialBytes;
        emb.tile.ops = cdiv(r * width, tiles_) * static_cast<double>(op.tables - 1);
        emb.tile.sram_bytes = 2 * emb.tile.exchange_bytes;
        const auto used = static_cast<double>(emb.tiles);
        emb.total = {0, emb.tile.ops * used, emb.tile.sram_bytes * used, emb.tile.exchange_bytes * used};
        out.push_back(emb);
        return;
      }
      case LoweredKind::Norm:
        // LayerNorm gathers the sum and the sum of squares; RMSNorm the sum of squares.
        norm(out, op.name, rows, op.op == ir::OpKind::LayerNorm ? 2 : 1);
        return;
      case LoweredKind::Projection:
        matmul(out, prefix, matrix(op), rows);
        return;
      case LoweredKind::Rope:
        elementwise(out, op.name, r * width, 6);
        return;
      case LoweredKind::Attention:
        attention(out, prefix, op, tokens);
        return;
      case LoweredKind::Add:
      case LoweredKind::Mul:
        elementwise(out, op.name, r * width, 1);
        return;
      case LoweredKind::Activation:
        // GELU (tanh form) 8 ops per element; SiLU 4, and one more to gate.
        elementwise(out, op.name, r * width, op.op == ir::OpKind::Gelu ? 8 : 4 + (op.gated ? 1 : 0));
        return;
    }
  }

  std::vector<Superstep> phase(int64_t tokens, bool prefill) const {
    const int64_t rows = o_.micro_batch * tokens;
    std::vector<Superstep> out;
    // Every layer's experts see the same tokens: one routing per phase (compiler/routing.hpp).
    const ExpertLoads routed = m_.n_experts > 0
                                   ? expert_loads(o_.routing, rows, m_.n_experts, m_.experts_per_token, m_.n_experts)
                                   : ExpertLoads{};
    for (const auto& op : g_.embedding) lower(out, op, "", tokens, rows, routed);
    for (int64_t l = 0; l < layers(); ++l) {
      const LoweredLayer& layer = g_.layers.at(static_cast<size_t>(l));
      for (const auto& op : layer.ops) lower(out, op, layer.prefix, tokens, rows, routed);
    }
    if (o_.slice.lm_head && g_.encoder) {
      // An encoder's every token reaches the head; the logits go to the host.
      for (const auto& op : g_.head) lower(out, op, "", tokens, rows, routed);
    } else if (o_.slice.lm_head) {
      // Only each request's last token reaches the LM head; the next token is picked on the chip.
      const size_t first = out.size();
      for (const auto& op : g_.head) lower(out, op, "", 1, o_.micro_batch, routed);
      norm(out, "lm_head.argmax", o_.micro_batch, 2);
      for (size_t i = first; i < out.size(); ++i) out[i].last_chunk_only = prefill;
    }
    return out;
  }

 private:
  // The projection as this chip holds it: a layer's matrices by their name within the layer; the
  // LM head as its shard.
  const Matrix& matrix(const LoweredOp& op) const {
    for (const Matrix& mx : head_)
      if (mx.name == op.name) return mx;
    for (const Matrix& mx : layer_)
      if (mx.name == op.local) return mx;
    fail("projection '{}' differs from the first layer's (every layer of a plan has the same shape)", op.name);
  }

  double used_fraction(const Matrix& mx) const {
    const Split s = splits_.at(mx.name);
    return static_cast<double>(s.pk * s.pn) / tiles_;
  }

  // The split over at most `tiles` tiles that makes a decode step (rows = batch) soonest: exchange
  // in, multiply, and reduce when k is split, each with its sync.
  Split choose_split(const Matrix& mx, int64_t tiles) const {
    const auto r = static_cast<double>(o_.micro_batch);
    const double sram_rate = a_.core.sram_bytes_per_cycle, ex = a_.exchange.bytes_per_cycle;
    Split best;
    double best_cycles = -1;
    for (int64_t pk = 1; pk <= std::min<int64_t>(mx.k, tiles); pk *= 2) {
      const int64_t pn = std::min<int64_t>(mx.n, tiles / pk);
      const double kb = cdiv(static_cast<double>(mx.k), static_cast<double>(pk)),
                   nb = cdiv(static_cast<double>(mx.n), static_cast<double>(pn));
      const double weight_read = kb * nb * storage_.bits(mx.k) / 8;
      const double compute = std::max(r * kb * nb * storage_.mac_fraction() / rate_, weight_read / sram_rate) +
                             storage_.unpack_ops() * kb * nb / ops_rate_;
      double cycles = a_.exchange.sync_cycles + r * kb * act_bytes_ / ex + compute;
      if (pk > 1)
        cycles += a_.exchange.sync_cycles +
                  static_cast<double>(pk - 1) * r * cdiv(nb, static_cast<double>(pk)) * kPartialBytes / ex;
      if (best_cycles < 0 || cycles < best_cycles) best_cycles = cycles, best = {pk, pn};
    }
    return best;
  }

  const ir::ModelConfig& m_;
  const LoweredModel& g_;
  const arch::ArchSpec& a_;
  const ExchangeCompileOptions& o_;
  WeightStorage storage_;
  double tiles_, act_bytes_, kv_bytes_, rate_, ops_rate_;
  int64_t experts_ = 1;
  std::vector<Matrix> expert_matrices_;  // a mixture of experts' w1|w3 and w2, each expert's
  double layer_vector_bytes_ = 0, head_vector_bytes_ = 0, table_bytes_ = 0;
  std::vector<Matrix> layer_;
  std::vector<Matrix> head_;  // the head's projections, the LM head (this chip's shard) last
  std::map<std::string, Split> splits_;
};

struct TileMemory {
  double weights, kv, activations;
  double total() const { return weights + kv + activations; }
};

TileMemory tile_memory(const ExchangeLowering& low, int64_t tokens, int64_t context) {
  return {low.weight_bytes_per_tile(), low.kv_bytes_per_tile(context), low.activation_bytes_per_tile(tokens, context)};
}

}  // namespace

ExchangeCompileResult compile_for_exchange(const ir::ModelConfig& model, const std::string& model_yaml,
                                           const std::string& model_origin, const arch::ArchSpec& arch,
                                           const std::string& arch_yaml, const std::string& arch_origin,
                                           const ExchangeCompileOptions& options) {
  if (arch.fabric != "exchange") fail("{} is not an exchange machine (an IPU)", arch.name);
  if (options.micro_batch < 1) fail("batch must be >= 1, got {}", options.micro_batch);
  if (options.resident_requests != 0 && options.resident_requests < options.micro_batch)
    fail("a chip holds the KV caches of at least the {} requests it computes, not {}", options.micro_batch,
         options.resident_requests);
  const int64_t layers = options.slice.layer_count(model);
  if (layers < 0 || layers > model.n_layers)
    fail("a pipeline stage of {} layers: {} has {}", layers, model.name, model.n_layers);
  if (options.slice.head_shards < 1 || (options.slice.head_shards > 1 && (layers > 0 || !options.slice.lm_head)))
    fail("an LM head split over {} chips must be a stage of its own (no layers)", options.slice.head_shards);
  if (options.slice.expert_shards < 1 || options.slice.expert_shards > std::max<int64_t>(1, model.n_experts))
    fail("the experts of {} split over {} chips: {} has {} experts per layer", model.name, options.slice.expert_shards,
         model.name, model.n_experts);
  if (options.slice.expert_shards > 1 && options.slice.lm_head)
    fail("a group of chips splitting the experts does not hold the LM head (it gets chips of its own)");
  const int64_t context = check_request(model, arch, options.prompt_tokens, options.max_new_tokens, options.precision);

  std::optional<LoweredModel> own;
  const LoweredModel& lowered =
      options.lowered ? *options.lowered : own.emplace(lower_graph(ir::build_model_graph(model)));
  const ExchangeLowering low(model, lowered, arch, options);
  ExchangeCompileResult result;
  const double usable = arch.usable_sram_per_core();
  const TileMemory one = tile_memory(low, 1, context);
  if (one.total() > usable) {
    const std::string hint =
        options.slice.whole(model)
            ? fmt::format("split it over a pipeline of chips (`tessera compare --arch Nx{}` finds the fewest)",
                          arch.name)
            : std::string("use more chips, narrower weights or a shorter context");
    result.status = FitFailure{
        model.name,
        "one " + arch.name,
        "SRAM per tile",
        "each tile",
        one.total(),
        usable,
        "bytes",
        fmt::format("each tile needs {:.1f} KiB (weights {:.1f}, KV cache {:.1f} for {} requests of {} tokens, "
                    "activations {:.1f}) of its {:.1f} KiB usable ({:.0f} KiB reserved); the chip's weights alone are "
                    "{:.2f} GB of its {:.2f} GB of tile SRAM",
                    one.total() / 1024, one.weights / 1024, one.kv / 1024, options.micro_batch, context,
                    one.activations / 1024, usable / 1024, arch.core.reserved_bytes / 1024,
                    low.chip_weight_bytes() / 1e9, usable * static_cast<double>(arch.usable.cores()) / 1e9),
        hint};
    return result;
  }
  // The largest prefill chunk whose activations fit.
  int64_t chunk = options.prompt_tokens;
  while (chunk > 1 && tile_memory(low, chunk, context).total() > usable) chunk = (chunk + 1) / 2;

  program::BspPlan& p = result.plan;
  p.arch_yaml = arch_yaml, p.arch_origin = arch_origin, p.model_yaml = model_yaml, p.model_origin = model_origin;
  p.precision = options.precision;
  p.weight_bits = low.storage().bits(model.d_model);
  p.skip_weight_zeros = low.storage().skips_zeros();
  p.prompt_tokens = options.prompt_tokens, p.max_new_tokens = options.max_new_tokens, p.batch = options.micro_batch;
  p.layers = layers, p.embedding = options.slice.embedding, p.lm_head = options.slice.lm_head;
  if (model.n_experts > 0) p.routing = routing_name(options.routing);
  const TileMemory mem = tile_memory(low, chunk, context);
  p.weight_bytes = mem.weights, p.kv_cache_bytes = mem.kv, p.activation_bytes = mem.activations;
  p.chip_weight_bytes = low.chip_weight_bytes();
  p.prefill_chunk_tokens = chunk;
  p.prefill = low.phase(chunk, true);
  p.decode = low.phase(1, false);
  return result;
}

}  // namespace tessera::compiler
