#include "tessera/target/shared_memory/gpu_compiler.hpp"

#include "tessera/compiler/request.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace tessera::compiler {

using program::Kernel;

namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// CUTLASS-style CTA tiles (rows x columns of the output) and their K slab, kept `kStages` deep in
// shared memory (the usual multistage pipeline; tessera's assumption, not a measured choice).
// The 16-row tiles are what small-batch decode GEMMs use (a tensor-core MMA is 16 rows tall).
constexpr std::array<std::array<int64_t, 2>, 9> kTiles = {
    {{128, 256}, {256, 128}, {128, 128}, {64, 128}, {128, 64}, {64, 64}, {32, 128}, {16, 256}, {16, 128}}};
constexpr int64_t kSlab = 64;
constexpr int64_t kStages = 3;

class GpuLowering {
 public:
  GpuLowering(const ir::ModelConfig& m, const arch::ArchSpec& a, const GpuCompileOptions& o)
      : m_(m),
        a_(a),
        o_(o),
        t_(o.tensor_parallel),
        storage_(a, o.precision),
        act_bytes_(storage_bits(o.precision.activations) / 8),
        kv_bytes_(storage_bits(o.precision.kv) / 8),
        rate_(a.core.macs_per_cycle.at(o.precision.activations)) {}

  const WeightStorage& storage() const { return storage_; }
  double weight_bits(int64_t k) const { return storage_.bits(k); }
  int64_t kv_dim() const { return m_.n_kv_heads * m_.head_dim(); }

  // A [m, k] x [k, n] GEMM on this GPU: the tile that finishes soonest among those whose pipeline
  // fits the SM's shared memory (one CTA per SM).
  Kernel gemm(const std::string& name, int64_t m, int64_t n, int64_t k) const {
    Kernel kern;
    kern.name = name, kern.op = "gemm", kern.m = m, kern.n = n, kern.k = k;
    const double density = storage_.mac_fraction();
    kern.macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) * density;
    kern.hbm_bytes = static_cast<double>(n) * static_cast<double>(k) * weight_bits(k) / 8 +
                     static_cast<double>(m) * static_cast<double>(k + n) * act_bytes_;
    kern.unpack_ops = storage_.unpack_ops() * static_cast<double>(n) * static_cast<double>(k) * density;
    const double memory_cycles = kern.hbm_bytes / a_.gpu.hbm_bytes_per_second * a_.clock_hz;
    double best = -1;
    for (const auto& [tm, tn] : kTiles) {
      if (static_cast<double>(kStages * (tm + tn) * kSlab) * act_bytes_ > a_.core.sram_bytes) continue;
      // A matrix unit computes its tile's full height (at least core.matrix_rows); datapaths
      // without a declared height (fp32 on CUDA cores) compute only the rows there are.
      const auto pad = a_.core.matrix_rows.find(o_.precision.activations);
      const int64_t rows =
          pad != a_.core.matrix_rows.end() ? std::max(tm, static_cast<int64_t>(pad->second)) : std::min(m, tm);
      const int64_t tiles = cdiv(m, tm) * cdiv(n, tn);
      // Split K over otherwise idle SMs (as cuBLAS does for small outputs), a slab at least each.
      const int64_t split = std::max<int64_t>(1, std::min(a_.usable.cores() / tiles, k / kSlab));
      const int64_t ctas = tiles * split, waves = cdiv(ctas, a_.usable.cores()), tile_k = cdiv(k, split);
      const double cycles = std::max(static_cast<double>(waves * rows * tn * tile_k) * density / rate_, memory_cycles);
      if (best < 0 || cycles < best) {
        best = cycles;
        kern.tile_m = rows, kern.tile_n = tn, kern.tile_k = tile_k, kern.ctas = ctas, kern.waves = waves;
      }
    }
    if (best < 0)
      fail("{}: no GEMM tile's pipeline fits {}'s {:.0f} KiB of shared memory per SM", name, a_.name,
           a_.core.sram_bytes / 1024);
    return kern;
  }

  Kernel elementwise(const std::string& name, double elements_read, double elements_written) const {
    Kernel kern;
    kern.name = name, kern.op = "elementwise";
    kern.hbm_bytes = (elements_read + elements_written) * act_bytes_;
    return kern;
  }

  Kernel allreduce(const std::string& name, int64_t tokens) const {
    Kernel kern;
    kern.name = name, kern.op = "allreduce";
    kern.link_bytes = static_cast<double>(tokens * m_.d_model) * act_bytes_;
    return kern;
  }

  // FlashAttention-style: scores never reach HBM. `tokens` new queries per request at `first`
  // positions already cached; decode kernels scale with the context through *_per_position.
  Kernel attention(const std::string& name, int64_t tokens, bool decode) const {
    Kernel kern;
    kern.name = name, kern.op = "attention";
    const auto b = static_cast<double>(o_.micro_batch), q_width = static_cast<double>(m_.d_model / t_),
               kv_width = static_cast<double>(kv_dim() / t_), n = static_cast<double>(tokens);
    const double new_kv = b * n * 2 * kv_width * kv_bytes_, q_and_out = b * n * 2 * q_width * act_bytes_;
    if (decode) {
      kern.macs_per_position = b * 2 * q_width;  // q.k and p.v for every head of this GPU
      kern.hbm_bytes_per_position = b * 2 * kv_width * kv_bytes_;
      kern.hbm_bytes = new_kv + q_and_out;
    } else {
      kern.macs = b * 2 * q_width * n * (n + 1) / 2;  // causal
      kern.hbm_bytes = 2 * new_kv + q_and_out;        // written, then read back by the kernel
    }
    return kern;
  }

  std::vector<Kernel> layer(int64_t l, int64_t tokens, bool decode) const {
    const bool gpt2 = m_.family == ir::ModelFamily::Gpt2;
    const int64_t d = m_.d_model, ff = m_.d_ff, rows = o_.micro_batch * tokens;
    const std::string p = fmt::format("{}{}.", gpt2 ? "h." : "model.layers.", l);
    const auto r = static_cast<double>(rows), dd = static_cast<double>(d), f = static_cast<double>(ff / t_);
    std::vector<Kernel> out;
    out.push_back(elementwise(p + (gpt2 ? "ln_1" : "input_layernorm"), r * dd, r * dd));
    out.push_back(gemm(p + (gpt2 ? "attn.c_attn" : "self_attn.qkv_proj"), rows, (d + 2 * kv_dim()) / t_, d));
    const double qk = r * (dd + static_cast<double>(kv_dim())) / static_cast<double>(t_);
    if (!gpt2) out.push_back(elementwise(p + "rope", qk, qk));
    out.push_back(attention(p + "attention", tokens, decode));
    out.push_back(gemm(p + (gpt2 ? "attn.c_proj" : "self_attn.o_proj"), rows, d, d / t_));
    if (t_ > 1) out.push_back(allreduce(p + "allreduce_attention", rows));
    out.push_back(elementwise(p + "residual_1", 2 * r * dd, r * dd));
    out.push_back(elementwise(p + (gpt2 ? "ln_2" : "post_attention_layernorm"), r * dd, r * dd));
    out.push_back(gemm(p + (gpt2 ? "mlp.c_fc" : "mlp.gate_up_proj"), rows, (gpt2 ? 1 : 2) * ff / t_, d));
    out.push_back(elementwise(p + (gpt2 ? "gelu" : "silu_mul"), (gpt2 ? 1 : 2) * r * f, r * f));
    out.push_back(gemm(p + (gpt2 ? "mlp.c_proj" : "mlp.down_proj"), rows, d, ff / t_));
    if (t_ > 1) out.push_back(allreduce(p + "allreduce_mlp", rows));
    out.push_back(elementwise(p + "residual_2", 2 * r * dd, r * dd));
    return out;
  }

  std::vector<Kernel> phase(int64_t tokens, bool decode) const {
    const bool gpt2 = m_.family == ir::ModelFamily::Gpt2;
    const auto r = static_cast<double>(o_.micro_batch * tokens), dd = static_cast<double>(m_.d_model);
    std::vector<Kernel> out{elementwise("embedding", r * dd * (gpt2 ? 2 : 1), r * dd)};
    for (int64_t l = 0; l < m_.n_layers; ++l)
      for (auto& k : layer(l, tokens, decode)) out.push_back(std::move(k));
    // Only each request's last token reaches the LM head.
    const auto last = static_cast<double>(o_.micro_batch);
    out.push_back(elementwise(gpt2 ? "ln_f" : "model.norm", last * dd, last * dd));
    out.push_back(gemm("lm_head", o_.micro_batch, m_.vocab_size / t_, m_.d_model));
    return out;
  }

  // Per GPU: every matrix's 1/t share, embeddings (vocabulary-parallel), norms and biases in fp32.
  double weight_bytes() const {
    const bool gpt2 = m_.family == ir::ModelFamily::Gpt2;
    const auto d = static_cast<double>(m_.d_model), ff = static_cast<double>(m_.d_ff),
               kv = static_cast<double>(kv_dim()), v = static_cast<double>(m_.vocab_size), t = static_cast<double>(t_);
    const double attn = (d * (d + 2 * kv) * weight_bits(m_.d_model) + d * d * weight_bits(m_.d_model)) / 8;
    const double mlp = ((gpt2 ? 1 : 2) * d * ff * weight_bits(m_.d_model) + ff * d * weight_bits(m_.d_ff)) / 8;
    const double vectors = (gpt2 ? 4 * d + 3 * d + ff + d + 2 * d : 2 * d) * 4;
    const double embeddings = v * d * weight_bits(m_.d_model) / 8 * (m_.tie_embeddings ? 1 : 2) +
                              (gpt2 ? static_cast<double>(m_.context_length) * d * 4 : 0);
    return (static_cast<double>(m_.n_layers) * (attn + mlp) + embeddings) / t +
           static_cast<double>(m_.n_layers) * vectors;
  }

  double kv_cache_bytes(int64_t context) const {
    return static_cast<double>(m_.n_layers * o_.micro_batch * context) * 2 * static_cast<double>(kv_dim() / t_) *
           kv_bytes_;
  }

  double activation_bytes(int64_t tokens) const {
    const auto rows = static_cast<double>(o_.micro_batch * tokens);
    const double widest = static_cast<double>(std::max({3 * m_.d_model, 2 * m_.d_ff, m_.vocab_size}) / t_);
    return rows * (2 * static_cast<double>(m_.d_model) + widest) * 4;
  }

 private:
  const ir::ModelConfig& m_;
  const arch::ArchSpec& a_;
  const GpuCompileOptions& o_;
  int64_t t_;
  WeightStorage storage_;
  double act_bytes_, kv_bytes_, rate_;
};

}  // namespace

GpuCompileResult compile_for_gpu(const ir::ModelConfig& model, const std::string& model_yaml,
                                 const std::string& model_origin, const arch::ArchSpec& arch,
                                 const std::string& arch_yaml, const std::string& arch_origin,
                                 const GpuCompileOptions& options) {
  if (arch.fabric != arch::FabricKind::SharedMemory) fail("{} is not a GPU (fabric shared_memory)", arch.name);
  if (options.micro_batch < 1) fail("batch must be >= 1, got {}", options.micro_batch);
  const int64_t t = options.tensor_parallel;
  if (t < 1 || model.n_heads % t != 0 || model.n_kv_heads % t != 0 || model.d_ff % t != 0)
    fail("tensor parallelism over {} GPUs must divide {}'s {} heads, {} KV heads and d_ff {}", t, model.name,
         model.n_heads, model.n_kv_heads, model.d_ff);
  const int64_t context = check_request(model, arch, options.prompt_tokens, options.max_new_tokens, options.precision);

  const GpuLowering low(model, arch, options);
  GpuCompileResult result;
  program::GpuPlan& p = result.plan;
  p.arch_yaml = arch_yaml, p.arch_origin = arch_origin, p.model_yaml = model_yaml, p.model_origin = model_origin;
  p.precision = options.precision;
  p.weight_bits = low.storage().bits(model.d_model);
  p.skip_weight_zeros = low.storage().skips_zeros();
  p.prompt_tokens = options.prompt_tokens, p.max_new_tokens = options.max_new_tokens;
  p.batch = options.micro_batch, p.tensor_parallel = t;
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
      const GpuLowering w(model, arch, wider);
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
