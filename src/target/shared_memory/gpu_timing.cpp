#include "tessera/target/shared_memory/gpu_timing.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "gemm_tiling.hpp"
#include "tessera/base/error.hpp"
#include "tessera/compiler/request.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::sim {

namespace {

struct KernelCost {
  double seconds = 0, compute = 0, memory = 0, link = 0, launch = 0, macs = 0, hbm = 0;
  std::string bound;
};

class GpuTimer {
 public:
  explicit GpuTimer(const program::GpuPlan& plan)
      : plan_(plan), arch_(target::parse_arch(plan.arch_yaml, plan.arch_origin)), storage_(arch_, plan.precision) {
    if (arch_.fabric != "shared_memory") fail("{}: not a GPU arch", plan.arch_origin);
    if (const Status s = arch::check_precision(arch_, plan.precision); !s)
      fail("{}: the plan's precision does not match its arch: {}", plan.arch_origin, s.message());
    // Per SM, at the share of the peak a large matrix product sustains.
    rate_ = arch_.core.macs_per_cycle.at(plan.precision.activations) * arch_.clock_hz * arch_.gpu.matmul_efficiency;
    attention_rate_ =
        arch_.core.macs_per_cycle.at(plan.precision.activations) * arch_.clock_hz * arch_.gpu.attention_efficiency;
    const auto fp32 = arch_.core.macs_per_cycle.find("fp32");
    unpack_rate_ = (fp32 != arch_.core.macs_per_cycle.end() ? fp32->second : 1.0) * arch_.clock_hz *
                   static_cast<double>(arch_.usable.cores());
    mac_pj_ = arch_.energy.mac_pj.at(plan.precision.activations);
    gemm_ = target::gemm_rate(arch_, plan.precision.activations);
  }

  const arch::ArchSpec& arch() const { return arch_; }

  KernelCost cost(const program::Kernel& k, int64_t positions) const {
    KernelCost c;
    const auto sms = static_cast<double>(arch_.usable.cores());
    c.macs = k.macs + k.macs_per_position * static_cast<double>(positions);
    c.hbm = k.hbm_bytes + k.hbm_bytes_per_position * static_cast<double>(positions);
    c.launch = arch_.gpu.kernel_launch_s;
    if (k.op == "allreduce") {
      // Ring allreduce: 2 (t - 1) steps, each moving 1/t of the payload over one link.
      const auto t = static_cast<double>(plan_.tensor_parallel);
      c.link = 2 * (t - 1) / t * k.link_bytes / arch_.chip_link.sustained_bytes_per_second() +
               2 * (t - 1) * arch_.chip_link.latency_s;
    } else if (k.op == "alltoall") {
      // Every pair of the group exchanges at once through the switch: the busiest GPU's bytes over
      // its link, and one message's latency (tessera's assumption; docs/gpu-model.md).
      c.link = k.link_bytes / arch_.chip_link.sustained_bytes_per_second() + arch_.chip_link.latency_s;
    } else if (k.op == "gemm" || k.op == "experts") {
      // Waves of CTAs, each SM working through one tile; a weight-only kernel dequantises on the
      // SMs' vector lanes alongside the tensor cores, so the longer of the two bounds it (Marlin
      // orders the two so neither stalls the other [N16]).
      const double dense = static_cast<double>(k.m) * static_cast<double>(k.n) * static_cast<double>(k.k);
      const double performed = dense > 0 ? k.macs / dense : 1.0;  // < 1 where pruned zeros are skipped
      target::GemmRate rate = gemm_;
      rate.mac_density = performed, rate.weight_bytes = storage_.bits(k.k) / 8;
      c.compute = std::max(static_cast<double>(k.waves * k.tile_k) *
                               target::tile_step_cycles(arch_, rate, k.tile_m, k.tile_n) / arch_.clock_hz,
                           k.unpack_ops / unpack_rate_);
    } else {
      c.compute = c.macs / ((k.op == "attention" ? attention_rate_ : rate_) * sms);
      // A prefill attention kernel's CTAs (blocks of queries) run in waves: a partial wave leaves
      // SMs idle (each CTA taking the average share of the work).
      if (k.op == "attention") c.compute *= target::AttentionWaves{k.ctas, k.waves}.slowdown(arch_.usable.cores());
    }
    c.memory = c.hbm / arch_.gpu.sustained_hbm_bytes_per_second() + target::workspace_seconds(arch_, k.workspace_bytes);
    // A split K's workspace that does not fit in L2 is HBM traffic (its bytes and energy).
    if (!target::workspace_in_l2(arch_, k.workspace_bytes)) c.hbm += k.workspace_bytes;
    const double body = std::max({c.compute, c.memory, c.link});
    c.seconds = c.launch + body;
    c.bound = body <= 0 ? "launch" : body == c.link ? "link" : c.compute >= c.memory ? "compute" : "memory";
    return c;
  }

  // Over the whole tensor-parallel group.
  double energy_pj(const KernelCost& c, const program::Kernel& k) const {
    const auto gpus = static_cast<double>(plan_.tensor_parallel);
    const bool differ = k.macs_all_gpus > 0 || k.hbm_bytes_all_gpus > 0;
    const double macs = differ ? k.macs_all_gpus : c.macs * gpus, hbm = differ ? k.hbm_bytes_all_gpus : c.hbm * gpus;
    return macs * mac_pj_ + hbm * arch_.energy.hbm_pj_per_byte + k.link_bytes * gpus * arch_.energy.offchip_pj_per_byte;
  }

 private:
  const program::GpuPlan& plan_;
  arch::ArchSpec arch_;
  compiler::WeightStorage storage_;  // how the plan's weights are stored: their bytes through L2
  double rate_ = 1, attention_rate_ = 1, unpack_rate_ = 1, mac_pj_ = 0;
  target::GemmRate gemm_;
};

void add(GpuPhase& phase, const KernelCost& c, double energy_pj, const program::Kernel& k) {
  phase.seconds += c.seconds;
  phase.launch_s += c.launch;
  if (c.bound == "compute") phase.compute_s += c.seconds - c.launch;
  if (c.bound == "memory") phase.memory_s += c.seconds - c.launch;
  if (c.bound == "link") phase.link_s += c.seconds - c.launch;
  phase.macs += c.macs, phase.hbm_bytes += c.hbm, phase.link_bytes += k.link_bytes;
  phase.energy_pj += energy_pj;
}

}  // namespace

GpuReport simulate_gpu(const program::GpuPlan& plan) {
  const GpuTimer timer(plan);
  const arch::ArchSpec& a = timer.arch();
  GpuReport r;
  r.arch_name = a.name;
  const ir::ModelConfig model = ir::parse_model_config(plan.model_yaml, plan.model_origin);
  r.model_name = model.name;
  // With expert parallelism each GPU serves `batch` requests of its own; figures are per GPU.
  const int64_t e = plan.expert_parallel;
  r.routing = compiler::routing_report(plan.routing, model.n_experts, model.experts_per_token, plan.batch * e,
                                       plan.prompt_tokens, e > 1 ? e : plan.tensor_parallel);
  r.gpus = plan.tensor_parallel * e, r.batch = plan.batch * e, r.expert_parallel = e;
  r.prompt_tokens = plan.prompt_tokens, r.generated_tokens = plan.max_new_tokens;
  r.hbm_used_bytes = plan.weight_bytes + plan.kv_cache_bytes + plan.activation_bytes;
  r.hbm_bytes = a.gpu.hbm_bytes;
  r.tdp_watts = a.gpu.tdp_watts;
  const auto gpus = static_cast<double>(plan.tensor_parallel);
  for (const auto& k : plan.prefill) {
    const KernelCost c = timer.cost(k, 0);
    add(r.prefill, c, timer.energy_pj(c, k), k);
    r.prefill_kernels.push_back({k.name, k.op, c.bound, c.seconds, c.macs, c.hbm, k.tile_m, k.tile_n, k.waves});
  }
  r.time_to_first_token_s = r.prefill.seconds;
  for (int64_t t = 1; t < plan.max_new_tokens; ++t) {
    const bool last = t + 1 == plan.max_new_tokens;
    for (const auto& k : plan.decode) {
      const KernelCost c = timer.cost(k, plan.prompt_tokens + t);
      add(r.decode, c, timer.energy_pj(c, k), k);
      if (last)
        r.last_decode_kernels.push_back({k.name, k.op, c.bound, c.seconds, c.macs, c.hbm, k.tile_m, k.tile_n, k.waves});
    }
  }
  const auto passes = static_cast<double>(std::max<int64_t>(plan.max_new_tokens - 1, 0));
  if (passes > 0 && r.decode.seconds > 0) {
    r.decode_tokens_per_s_per_user = passes / r.decode.seconds;
    r.decode_tokens_per_s = r.decode_tokens_per_s_per_user * static_cast<double>(r.batch);
    r.decode_energy_per_token_pj = r.decode.energy_pj / (passes * static_cast<double>(plan.batch));
    r.decode_utilization = r.decode.macs / (a.peak_macs_per_second(plan.precision.activations) * r.decode.seconds);
    r.decode_watts_per_gpu = r.decode.energy_pj * 1e-12 / r.decode.seconds / gpus;
    const std::array<std::pair<double, const char*>, 4> parts = {{{r.decode.compute_s, "compute"},
                                                                  {r.decode.memory_s, "memory"},
                                                                  {r.decode.link_s, "link"},
                                                                  {r.decode.launch_s, "launch"}}};
    r.decode_bound = std::max_element(parts.begin(), parts.end())->second;
  }
  return r;
}

}  // namespace tessera::sim
