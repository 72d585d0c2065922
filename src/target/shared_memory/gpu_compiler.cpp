#include "tessera/target/shared_memory/gpu_compiler.hpp"

#include "tessera/compiler/lowering.hpp"

#include <optional>
#include "tessera/compiler/request.hpp"
#include "tessera/ir/builders.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>

#include "gemm_tiling.hpp"
#include "tessera/compiler/routing.hpp"

namespace tessera::compiler {

using program::Kernel;

namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class GpuLowering {
 public:
  GpuLowering(const ir::ModelConfig& m, const LoweredModel& g, const arch::ArchSpec& a, const GpuCompileOptions& o)
      : m_(m),
        g_(g),
        a_(a),
        o_(o),
        t_(o.tensor_parallel),
        e_(o.expert_parallel),
        storage_(a, o.precision),
        act_bytes_(storage_bits(o.precision.activations) / 8),
        kv_bytes_(storage_bits(o.precision.kv) / 8),
        gemm_(target::gemm_rate(a, o.precision.activations)) {}

  const WeightStorage& storage() const { return storage_; }
  double weight_bits(int64_t k) const { return storage_.bits(k); }
  int64_t kv_dim() const { return m_.n_kv_heads * m_.head_dim(); }
  // Weights stored narrower than the MACs' format: GEMMs are weight-only kernels (Marlin-style).
  bool weight_only() const { return storage_.unpack_ops() > 0; }

  // A [m, k] x [k, n] GEMM on this GPU: the tile that finishes soonest among those whose pipeline
  // fits the SM's shared memory (one CTA per SM). Where a dense GEMM splits K, its partial sums go
  // to a workspace instead of the output, and a reduction kernel follows (gemm_tiling.hpp).
  void gemm(std::vector<Kernel>& out, const std::string& name, int64_t m, int64_t n, int64_t k) const {
    out.push_back(grouped_gemm(name, "gemm", {m}, 1, n, k, true));
    Kernel& product = out.back();
    if (product.workspace_bytes <= 0 || weight_only()) return;  // no split, or reduced in the kernel
    const double output_bytes = static_cast<double>(m) * static_cast<double>(n) * act_bytes_;
    product.hbm_bytes -= output_bytes;
    Kernel reduce;
    reduce.name = name + ".reduce", reduce.op = "reduce";
    reduce.workspace_bytes = product.workspace_bytes;
    reduce.hbm_bytes = output_bytes;
    out.push_back(reduce);
  }

  // GEMMs of one shape [k, n] with a weight matrix each, [groups[i], k] x [k, n], in one launch
  // (a mixture of experts' grouped GEMM: one group per expert with tokens), their tiles sharing
  // the waves, reading `matrices` weight matrices (an expectation: possibly fractional); `split_k`
  // lets CTAs split K when the outputs alone leave SMs idle.
  Kernel grouped_gemm(const std::string& name, const std::string& op, const std::vector<int64_t>& groups,
                      double matrices, int64_t n, int64_t k, bool split_k) const {
    Kernel kern;
    const int64_t m = std::accumulate(groups.begin(), groups.end(), int64_t{0});
    kern.name = name, kern.op = op, kern.m = m, kern.n = n, kern.k = k;
    const double density = storage_.mac_fraction();
    kern.macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) * density;
    kern.hbm_bytes = matrices * static_cast<double>(n) * static_cast<double>(k) * weight_bits(k) / 8 +
                     static_cast<double>(m) * static_cast<double>(k + n) * act_bytes_;
    kern.unpack_ops = matrices * storage_.unpack_ops() * static_cast<double>(n) * static_cast<double>(k) * density;
    const double memory_cycles = kern.hbm_bytes / a_.gpu.sustained_hbm_bytes_per_second() * a_.clock_hz;
    target::GemmRate rate = gemm_;
    rate.mac_density = density, rate.weight_bytes = weight_bits(k) / 8, rate.weight_only = weight_only();
    const auto tiling = target::fastest_tiling(a_, rate, groups, n, k, split_k, memory_cycles);
    if (!tiling)
      fail("{}: no GEMM tile's pipeline fits {}'s {:.0f} KiB of shared memory per SM", name, a_.name,
           a_.core.sram_bytes / 1024);
    kern.tile_m = tiling->tile_m, kern.tile_n = tiling->tile_n, kern.tile_k = tiling->tile_k;
    kern.ctas = tiling->ctas, kern.waves = tiling->waves;
    kern.workspace_bytes = tiling->kernel_workspace_bytes();
    return kern;
  }

  Kernel elementwise(const std::string& name, double elements_read, double elements_written) const {
    Kernel kern;
    kern.name = name, kern.op = "elementwise";
    kern.hbm_bytes = (elements_read + elements_written) * act_bytes_;
    return kern;
  }

  Kernel allreduce(const std::string& name, int64_t rows, int64_t width) const {
    Kernel kern;
    kern.name = name, kern.op = "allreduce";
    kern.link_bytes = static_cast<double>(rows * width) * act_bytes_;
    return kern;
  }

  // FlashAttention-style: scores never reach HBM. `tokens` new queries per request at `first`
  // positions already cached; decode kernels scale with the context through *_per_position.
  Kernel attention(const std::string& name, const LoweredOp& op, int64_t tokens, bool decode) const {
    Kernel kern;
    kern.name = name, kern.op = "attention";
    const auto b = static_cast<double>(o_.micro_batch), q_width = static_cast<double>(op.heads * op.head_dim / t_),
               kv_width = static_cast<double>(op.kv_heads * op.head_dim / t_), n = static_cast<double>(tokens);
    const double new_kv = b * n * 2 * kv_width * kv_bytes_, q_and_out = b * n * 2 * q_width * act_bytes_;
    if (decode) {
      kern.macs_per_position = b * 2 * q_width;  // q.k and p.v for every head of this GPU
      kern.hbm_bytes_per_position = b * 2 * kv_width * kv_bytes_;
      kern.hbm_bytes = new_kv + q_and_out;
    } else {
      kern.macs = b * 2 * q_width * (op.causal ? n * (n + 1) / 2 : n * n);  // causal: a triangle of scores
      kern.hbm_bytes = 2 * new_kv + q_and_out;                              // written, then read back by the kernel
      // One CTA per block of queries of a head of a request, in waves over the SMs (gemm_tiling.hpp).
      const target::AttentionWaves waves = target::attention_waves(a_, o_.micro_batch, op.heads / t_, tokens);
      kern.ctas = waves.ctas, kern.waves = waves.waves;
    }
    return kern;
  }

  // One op of the lowered graph as this GPU's kernels, for `rows` tokens of all requests.
  // Column-split projections (Megatron) leave their outputs split over the group; a projection
  // reading a split tensor splits k and an allreduce joins the partial outputs.
  void lower(std::vector<Kernel>& out, const LoweredOp& op, const std::string& prefix, int64_t tokens, int64_t rows,
             bool decode, const ExpertLoads& routed) const {
    const auto r = static_cast<double>(rows);
    const double per_gpu = static_cast<double>(op.width) / static_cast<double>(op.split_output ? t_ : 1);
    switch (op.kind) {
      case LoweredKind::Embedding:
        out.push_back(elementwise(op.name, r * per_gpu * static_cast<double>(op.tables), r * per_gpu));
        return;
      case LoweredKind::Norm:
        out.push_back(elementwise(op.name, r * per_gpu, r * per_gpu));
        // A norm of a tensor split over the group (BERT's head) all-reduces each row's statistics:
        // LayerNorm the sum and the sum of squares, RMSNorm the sum of squares, in fp32.
        if (op.split_input && t_ > 1) {
          Kernel stats;
          stats.name = op.name + ".stats", stats.op = "allreduce";
          stats.link_bytes = r * (op.op == ir::OpKind::LayerNorm ? 2 : 1) * 4;
          out.push_back(stats);
        }
        return;
      case LoweredKind::Rope:
        out.push_back(elementwise(op.name, r * per_gpu, r * per_gpu));
        return;
      case LoweredKind::Add:
      case LoweredKind::Mul:
        out.push_back(elementwise(op.name, 2 * r * per_gpu, r * per_gpu));
        return;
      case LoweredKind::Activation:
        out.push_back(elementwise(op.name, (op.gated ? 2 : 1) * r * per_gpu, r * per_gpu));
        return;
      case LoweredKind::Attention:
        out.push_back(attention(prefix + "attention", op, tokens, decode));
        return;
      case LoweredKind::Experts:
        lower_experts(out, op, rows, routed);
        return;
      case LoweredKind::Projection:
        if (!op.split_input) {
          gemm(out, op.name, rows, op.n / t_, op.k);
          return;
        }
        gemm(out, op.name, rows, op.n, op.k / t_);
        if (t_ > 1) out.push_back(allreduce(op.name + ".allreduce", rows, op.n));
        return;
    }
  }

  // A mixture of experts, two layouts (docs/gpu-model.md). Over the tensor-parallel group: expert e
  // on GPU e % t, whole; every GPU holds every token (the group's activations are replicated), so
  // it gathers those routed to its experts without moving them between GPUs and scatters each
  // token's weighted outputs back, and the allreduce a dense layer's down projection would need
  // sums the GPUs' shares. With expert parallelism (GpuCompileOptions::expert_parallel, attention
  // data-parallel): this GPU's tokens go to their experts' GPUs by all-to-all (expert e on GPU
  // e % e_) and the outputs come back the same way. Either way the experts run as grouped GEMMs
  // (gate|up, SiLU x up, down; no split K), the busiest GPU sets the pace with its experts' tokens
  // under the assumed routing (`loads`), and energy counts the experts any GPU used: the group's
  // (tensor parallel), or this GPU's share of the group's (expert parallel: figures per GPU).
  void lower_experts(std::vector<Kernel>& out, const LoweredOp& op, int64_t rows, const ExpertLoads& loads) const {
    const auto& groups = loads.busiest_device;
    const auto r = static_cast<double>(rows), d = static_cast<double>(op.k), f = static_cast<double>(op.n),
               e = static_cast<double>(e_), top_k = static_cast<double>(op.top_k);
    const auto routed = static_cast<double>(std::accumulate(groups.begin(), groups.end(), int64_t{0}));
    // What leaves this GPU (its tokens' copies for other GPUs' experts) or arrives at the busiest
    // (its experts' tokens from other GPUs), whichever is more.
    const double sent = r * top_k * (e - 1) / e, received = routed * (e - 1) / e;
    const auto all_to_all = [&](const std::string& name) {
      Kernel kern;
      kern.name = name, kern.op = "alltoall";
      kern.link_bytes = std::max(sent, received) * d * act_bytes_;
      kern.hbm_bytes = (sent + received) * d * act_bytes_;
      return kern;
    };
    const auto every_expert_used = [&](Kernel kern) {
      const double assignments = r * top_k, k = static_cast<double>(kern.k), n = static_cast<double>(kern.n);
      kern.macs_all_gpus = assignments * k * n * storage_.mac_fraction();
      kern.hbm_bytes_all_gpus =
          loads.experts_used_anywhere / e * n * k * weight_bits(kern.k) / 8 + assignments * (k + n) * act_bytes_;
      return kern;
    };
    out.push_back(e_ > 1 ? all_to_all(op.name + ".dispatch")
                         : elementwise(op.name + ".gather", routed * d, routed * d));
    out.push_back(every_expert_used(
        grouped_gemm(op.name + ".w1_w3", "experts", groups, loads.experts_used, 2 * op.n, op.k, false)));
    out.push_back(elementwise(op.name + ".silu_mul", 2 * routed * f, routed * f));
    out.push_back(
        every_expert_used(grouped_gemm(op.name + ".w2", "experts", groups, loads.experts_used, op.k, op.n, false)));
    if (e_ > 1) out.push_back(all_to_all(op.name + ".combine"));
    out.push_back(elementwise(op.name + ".scatter", (e_ > 1 ? r * top_k : routed) * d + r * d, r * d));
    if (t_ > 1) out.push_back(allreduce(op.name + ".allreduce", rows, op.k));
  }

  std::vector<Kernel> phase(int64_t tokens, bool decode) const {
    const int64_t rows = o_.micro_batch * tokens;
    std::vector<Kernel> out;
    // Every layer's experts see the same tokens: one routing per phase (compiler/routing.hpp);
    // with expert parallelism, the whole group's.
    const ExpertLoads routed =
        m_.n_experts > 0 ? expert_loads(o_.routing, rows * e_, m_.n_experts, m_.experts_per_token, e_ > 1 ? e_ : t_)
                         : ExpertLoads{};
    for (const auto& op : g_.embedding) lower(out, op, "", tokens, rows, decode, routed);
    for (const auto& layer : g_.layers)
      for (const auto& op : layer.ops) lower(out, op, layer.prefix, tokens, rows, decode, routed);
    // Only each request's last token reaches a decoder's head; an encoder's every token.
    for (const auto& op : g_.head)
      lower(out, op, "", g_.encoder ? tokens : 1, g_.encoder ? rows : o_.micro_batch, decode, routed);
    return out;
  }

  // Per GPU: every matrix's 1/t share (embeddings vocabulary-parallel), vectors whole in fp32.
  // A mixture of experts' matrices: the busiest GPU's ceil(experts / t) experts (or / e with
  // expert parallelism), whole.
  double weight_bytes() const {
    std::map<std::string, double> share;
    for (const auto* op : g_.ops())
      if (op->kind == LoweredKind::Experts)
        for (const auto& w : op->weights)
          share[w] = static_cast<double>(cdiv(op->experts, t_ * e_)) / static_cast<double>(op->experts);
    double bytes = 0;
    for (const auto& p : g_.parameters) {
      const auto expert = share.find(p.name);
      const double part = expert != share.end() ? expert->second : 1.0 / static_cast<double>(t_);
      bytes +=
          p.k > 0 ? static_cast<double>(p.elements) * weight_bits(p.k) / 8 * part : static_cast<double>(p.elements) * 4;
    }
    return bytes;
  }

  double kv_cache_bytes(int64_t context) const {
    return static_cast<double>(m_.n_layers * o_.micro_batch * context) * 2 * static_cast<double>(kv_dim() / t_) *
           kv_bytes_;
  }

  // The residual stream twice and the widest projection output.
  double activation_bytes(int64_t tokens) const {
    const auto rows = static_cast<double>(o_.micro_batch * tokens);
    int64_t widest_n = 0;
    for (const auto* op : g_.ops()) {
      if (op->kind == LoweredKind::Projection) widest_n = std::max(widest_n, op->n);
      if (op->kind == LoweredKind::Experts) widest_n = std::max(widest_n, op->top_k * 2 * op->n * t_ * e_);
    }
    const double widest = static_cast<double>(widest_n / t_);
    return rows * (2 * static_cast<double>(m_.d_model) + widest) * 4;
  }

 private:
  const ir::ModelConfig& m_;
  const LoweredModel& g_;
  const arch::ArchSpec& a_;
  const GpuCompileOptions& o_;
  int64_t t_, e_;
  WeightStorage storage_;
  double act_bytes_, kv_bytes_;
  target::GemmRate gemm_;
};

}  // namespace

GpuCompileResult compile_for_gpu(const ir::ModelConfig& model, const std::string& model_yaml,
                                 const std::string& model_origin, const arch::ArchSpec& arch,
                                 const std::string& arch_yaml, const std::string& arch_origin,
                                 const GpuCompileOptions& options) {
  if (arch.fabric != "shared_memory") fail("{} is not a GPU (fabric shared_memory)", arch.name);
  if (options.micro_batch < 1) fail("batch must be >= 1, got {}", options.micro_batch);
  const int64_t t = options.tensor_parallel;
  if (t < 1 || model.n_heads % t != 0 || model.n_kv_heads % t != 0 || model.d_ff % t != 0)
    fail("tensor parallelism over {} GPUs must divide {}'s {} heads, {} KV heads and d_ff {}", t, model.name,
         model.n_heads, model.n_kv_heads, model.d_ff);
  const int64_t e = options.expert_parallel;
  if (e < 1 || (e > 1 && (model.n_experts == 0 || e > model.n_experts)))
    fail(
        "expert parallelism over {} GPUs: {} has {} experts per layer (--ep is for mixtures of experts, at most one "
        "GPU per expert)",
        e, model.name, model.n_experts);
  if (e > 1 && t != 1) fail("expert parallelism runs attention data-parallel: --ep {} needs --tp 1, not {}", e, t);
  const int64_t context = check_request(model, arch, options.prompt_tokens, options.max_new_tokens, options.precision);

  std::optional<LoweredModel> own;
  const LoweredModel& lowered =
      options.lowered ? *options.lowered : own.emplace(lower_graph(ir::build_model_graph(model)));
  const GpuLowering low(model, lowered, arch, options);
  GpuCompileResult result;
  program::GpuPlan& p = result.plan;
  p.arch_yaml = arch_yaml, p.arch_origin = arch_origin, p.model_yaml = model_yaml, p.model_origin = model_origin;
  p.precision = options.precision;
  p.weight_bits = low.storage().bits(model.d_model);
  p.skip_weight_zeros = low.storage().skips_zeros();
  p.prompt_tokens = options.prompt_tokens, p.max_new_tokens = options.max_new_tokens;
  p.batch = options.micro_batch, p.tensor_parallel = t, p.expert_parallel = e;
  if (model.n_experts > 0) p.routing = routing_name(options.routing);
  p.weight_bytes = low.weight_bytes();
  p.kv_cache_bytes = low.kv_cache_bytes(context);
  p.activation_bytes = low.activation_bytes(options.prompt_tokens);
  const double need = p.weight_bytes + p.kv_cache_bytes + p.activation_bytes;
  if (need > arch.gpu.hbm_bytes) {
    // The smallest tensor-parallel group (dividing the heads) whose per-GPU share would fit.
    std::string hint = "no tensor-parallel group up to the KV head count fits";
    for (int64_t g = t + 1; g <= model.n_kv_heads; ++g) {
      if (model.n_heads % g || model.n_kv_heads % g || model.d_ff % g) continue;
      GpuCompileOptions wider = options;
      wider.tensor_parallel = g;
      const GpuLowering w(model, lowered, arch, wider);
      if (w.weight_bytes() + w.kv_cache_bytes(context) + w.activation_bytes(options.prompt_tokens) <=
          arch.gpu.hbm_bytes) {
        hint = fmt::format("tensor parallelism over {} GPUs would fit (--tp {})", g, g);
        break;
      }
    }
    result.status = FitFailure{
        model.name,
        fmt::format("{} x {}", t, arch.name),
        "HBM per GPU",
        "each GPU",
        need,
        arch.gpu.hbm_bytes,
        "bytes",
        fmt::format("each GPU needs {:.1f} GB (weights {:.1f}, KV cache {:.1f} for {} requests of {} tokens, "
                    "activations {:.1f}) of its {:.1f} GB HBM",
                    need / 1e9, p.weight_bytes / 1e9, p.kv_cache_bytes / 1e9, options.micro_batch, context,
                    p.activation_bytes / 1e9, arch.gpu.hbm_bytes / 1e9),
        hint + ", or fewer requests / a shorter context / smaller weights"};
    return result;
  }
  p.prefill = low.phase(options.prompt_tokens, false);
  p.decode = low.phase(1, true);
  return result;
}

}  // namespace tessera::compiler
