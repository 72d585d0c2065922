#include "tessera/target/exchange/bsp_timing.hpp"

#include <algorithm>
#include <array>

#include "tessera/base/error.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::sim {

namespace {

class BspTimer {
 public:
  explicit BspTimer(const program::BspPlan& plan) : arch_(target::parse_arch(plan.arch_yaml, plan.arch_origin)) {
    if (arch_.fabric != "exchange") fail("{}: not an exchange (IPU) arch", plan.arch_origin);
    if (const Status s = arch::check_precision(arch_, plan.precision); !s)
      fail("{}: the plan's precision does not match its arch: {}", plan.arch_origin, s.message());
    rates_ = bsp_rates(arch_, plan.precision.activations);
    mac_pj_ = arch_.energy.mac_pj.at(plan.precision.activations);
  }

  const arch::ArchSpec& arch() const { return arch_; }

  // Adds one superstep at `positions` cached positions to `phase`; returns its time.
  SuperstepTime add(BspPhase& phase, const program::Superstep& st, double positions) const {
    const auto at = [&](const program::BspWork& base, const program::BspWork& per) {
      return program::BspWork{base.macs + per.macs * positions, base.ops + per.ops * positions,
                              base.sram_bytes + per.sram_bytes * positions,
                              base.exchange_bytes + per.exchange_bytes * positions};
    };
    const program::BspWork tile = at(st.tile, st.tile_per_position), all = at(st.total, st.total_per_position);
    const SuperstepParts parts = superstep_parts(arch_, rates_, tile, st.sync);
    const double sync = parts.sync_s, exchange = parts.exchange_s, compute = parts.compute_s;
    phase.seconds += sync + exchange + compute;
    phase.sync_s += sync, phase.exchange_s += exchange, phase.compute_s += compute;
    phase.macs += all.macs, phase.exchange_bytes += all.exchange_bytes, phase.sram_bytes += all.sram_bytes;
    phase.energy_pj += all.macs * mac_pj_ +
                       all.sram_bytes * (arch_.energy.sram_read_pj_per_byte + arch_.energy.sram_write_pj_per_byte) / 2 +
                       all.exchange_bytes * arch_.energy.exchange_pj_per_byte;
    const char* bound = compute >= exchange && compute >= sync ? "compute" : exchange >= sync ? "exchange" : "sync";
    return {st.name, st.op, bound, sync + exchange + compute, all.macs, all.exchange_bytes};
  }

 private:
  arch::ArchSpec arch_;
  BspRates rates_;
  double mac_pj_ = 0;
};

}  // namespace

BspRates bsp_rates(const arch::ArchSpec& a, const std::string& mac_dtype) {
  BspRates r;
  r.macs_per_cycle = a.core.macs_per_cycle.at(mac_dtype);
  const auto fp32 = a.core.macs_per_cycle.find("fp32");
  r.ops_per_cycle = fp32 != a.core.macs_per_cycle.end() ? fp32->second : r.macs_per_cycle;
  return r;
}

SuperstepParts superstep_parts(const arch::ArchSpec& a, const BspRates& rates, const program::BspWork& tile,
                               bool sync) {
  const double hz = a.clock_hz;
  SuperstepParts p;
  p.sync_s = sync ? a.exchange.sync_cycles / hz : 0;
  p.exchange_s = tile.exchange_bytes / a.exchange.bytes_per_cycle / hz;
  p.compute_s = std::max(tile.macs / rates.macs_per_cycle + tile.ops / rates.ops_per_cycle,
                         tile.sram_bytes / a.core.sram_bytes_per_cycle) /
                hz;
  return p;
}

BspReport simulate_bsp(const program::BspPlan& plan) {
  const BspTimer timer(plan);
  const arch::ArchSpec& a = timer.arch();
  BspReport r;
  r.arch_name = a.name;
  const ir::ModelConfig model = ir::parse_model_config(plan.model_yaml, plan.model_origin);
  r.model_name = model.name;
  r.routing = compiler::routing_report(plan.routing, model.n_experts, model.experts_per_token, plan.batch,
                                       plan.prompt_tokens, model.n_experts);
  r.batch = plan.batch, r.prompt_tokens = plan.prompt_tokens, r.generated_tokens = plan.max_new_tokens;
  r.supersteps_per_token = static_cast<int64_t>(plan.decode.size());
  r.tile_bytes_used = plan.weight_bytes + plan.kv_cache_bytes + plan.activation_bytes;
  r.tile_bytes = a.usable_sram_per_core();
  for (int64_t start = 0; start < plan.prompt_tokens; start += plan.prefill_chunk_tokens) {
    const bool last = start + plan.prefill_chunk_tokens >= plan.prompt_tokens;
    for (const auto& st : plan.prefill) {
      if (!last && st.last_chunk_only) continue;
      const SuperstepTime time = timer.add(r.prefill, st, static_cast<double>(start));
      if (last) r.prefill_steps.push_back(time);
    }
  }
  r.time_to_first_token_s = r.prefill.seconds;
  for (int64_t t = 1; t < plan.max_new_tokens; ++t)
    for (const auto& st : plan.decode) {
      const SuperstepTime time = timer.add(r.decode, st, static_cast<double>(plan.prompt_tokens + t));
      if (t + 1 == plan.max_new_tokens) r.last_decode_steps.push_back(time);
    }
  const auto passes = static_cast<double>(std::max<int64_t>(plan.max_new_tokens - 1, 0));
  if (passes > 0 && r.decode.seconds > 0) {
    r.decode_tokens_per_s_per_user = passes / r.decode.seconds;
    r.decode_tokens_per_s = r.decode_tokens_per_s_per_user * static_cast<double>(plan.batch);
    r.decode_energy_per_token_pj = r.decode.energy_pj / (passes * static_cast<double>(plan.batch));
    r.decode_utilization = r.decode.macs / (a.peak_macs_per_second(plan.precision.activations) * r.decode.seconds);
    const std::array<std::pair<double, const char*>, 3> parts = {
        {{r.decode.compute_s, "compute"}, {r.decode.exchange_s, "exchange"}, {r.decode.sync_s, "sync"}}};
    r.decode_bound = std::max_element(parts.begin(), parts.end())->second;
  }
  return r;
}

}  // namespace tessera::sim
