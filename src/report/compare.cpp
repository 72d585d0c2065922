#include "tessera/report/compare.hpp"

#include <fmt/core.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "tessera/report/output_files.hpp"

namespace tessera::report {

CompareRow compare_row(const std::string& arch, const std::string& model, int64_t batch, const system::Result& r) {
  CompareRow row;
  row.arch = arch, row.model = model, row.batch = batch, row.fits = r.fits;
  row.chips = r.chips_used, row.mapping = r.mapping, row.note = r.note;
  row.time_to_first_token_s = r.time_to_first_token_s;
  row.tokens_per_s_per_user = r.tokens_per_s_per_user;
  row.tokens_per_s = r.tokens_per_s;
  row.served_tokens_per_s = r.served_tokens_per_s;
  row.energy_per_token_j = r.energy_per_token_j;
  row.utilization = r.utilization;
  row.bound = r.bound;
  row.fit_failure = r.fit_failure;
  return row;
}

std::string compare_table(const std::vector<CompareRow>& rows) {
  // Several models side by side: a column naming each row's.
  const bool models =
      std::any_of(rows.begin(), rows.end(), [&](const CompareRow& r) { return r.model != rows.front().model; });
  size_t width = 5;
  for (const auto& r : rows) width = std::max(width, r.model.size());
  const auto model = [&](const std::string& name) { return models ? fmt::format("{:<{}} ", name, width) : ""; };
  std::string out =
      model("model") +
      fmt::format("{:<12} {:>5} {:>5}  {:<4} {:<20} {:>10} {:>11} {:>12} {:>12} {:>10} {:>6}  {}\n", "arch", "chips",
                  "batch", "fits", "mapping", "TTFT ms", "tok/s/user", "tok/s total", "served tok/s", "mJ/token",
                  "util",
                  std::any_of(rows.begin(), rows.end(), [](const CompareRow& r) { return !r.tokens.empty(); })
                      ? "bound     tokens"
                      : "bound");
  for (const auto& r : rows) {
    if (!r.fits) {
      out += model(r.model) + fmt::format("{:<12} {:>5} {:>5}  {:<4} {}\n", r.arch, r.chips, r.batch, "no", r.note);
      continue;
    }
    if (r.one_pass) {  // nothing generated: no decode figures
      out += model(r.model) + fmt::format("{:<12} {:>5} {:>5}  {:<4} {:<20} {:>10.3f} {:>11} {:>12} {:>12.1f} {:>10}\n",
                                          r.arch, r.chips, r.batch, "yes", r.mapping, r.time_to_first_token_s * 1e3,
                                          "-", "-", r.served_tokens_per_s, "-");
      continue;
    }
    out += model(r.model) +
           fmt::format(
               "{:<12} {:>5} {:>5}  {:<4} {:<20} {:>10.3f} {:>11.1f} {:>12.1f} {:>12.1f} {:>10.4f} {:>5.1f}%  {}\n",
               r.arch, r.chips, r.batch, "yes", r.mapping, r.time_to_first_token_s * 1e3, r.tokens_per_s_per_user,
               r.tokens_per_s, r.served_tokens_per_s, r.energy_per_token_j * 1e3, 100 * r.utilization,
               r.tokens.empty() ? r.bound : fmt::format("{:<9} {}", r.bound, r.tokens));
  }
  return out;
}

std::string compare_json(const std::vector<CompareRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json fit = nullptr;
    if (const auto& f = r.fit_failure)
      fit = {{"resource", f->resource},
             {"where", f->where},
             {"needed", f->needed},
             {"available", f->available},
             {"unit", f->unit}};
    out.push_back({{"arch", r.arch},
                   {"fit_failure", fit},
                   {"model", r.model},
                   {"chips", r.chips},
                   {"batch", r.batch},
                   {"fits", r.fits},
                   {"mapping", r.mapping},
                   {"note", r.note},
                   {"time_to_first_token_s", r.time_to_first_token_s},
                   {"tokens_per_s_per_user", r.tokens_per_s_per_user},
                   {"tokens_per_s", r.tokens_per_s},
                   {"served_tokens_per_s", r.served_tokens_per_s},
                   {"energy_per_token_j", r.energy_per_token_j},
                   {"utilization", r.utilization},
                   {"bound", r.bound},
                   {"tokens", r.tokens}});
  }
  return nlohmann::json{{"schema", "tessera-compare/2"}, {"rows", out}}.dump(1) + "\n";
}

std::string compare_csv(const std::vector<CompareRow>& rows) {
  std::string out = std::string(kCompareCsvHeader) + "\n";
  for (const auto& r : rows)
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n", r.arch, r.model, r.chips, r.batch,
                       r.fits ? 1 : 0, r.mapping, r.time_to_first_token_s, r.tokens_per_s_per_user, r.tokens_per_s,
                       r.served_tokens_per_s, r.energy_per_token_j, r.utilization, r.bound, r.tokens, r.note);
  return out;
}

std::string batch_sweep_summary(const std::vector<CompareRow>& rows) {
  std::string out;
  for (size_t i = 0; i < rows.size();) {
    size_t end = i;
    while (end < rows.size() && rows[end].arch == rows[i].arch) ++end;
    const CompareRow* first = nullptr;
    const CompareRow* turn = nullptr;
    const CompareRow* best = nullptr;
    const CompareRow* last = nullptr;
    int64_t before_turn = 0;
    for (size_t j = i; j < end; ++j) {
      const CompareRow& r = rows[j];
      if (!r.fits) continue;
      if (!first) first = &r;
      if (!turn && r.bound != first->bound) turn = &r;
      if (!turn) before_turn = r.batch;
      if (!best || r.tokens_per_s > best->tokens_per_s) best = &r;
      last = &r;
    }
    if (!first) {
      out += fmt::format("{}: does not fit at batch {}\n", rows[i].arch, rows[i].batch);
    } else {
      out += fmt::format("{}: {}-bound up to batch {}", rows[i].arch, first->bound, before_turn);
      if (turn) out += fmt::format(", {}-bound from batch {}", turn->bound, turn->batch);
      out += fmt::format("; aggregate peaks at {:.0f} tokens/s at batch {}; ", best->tokens_per_s, best->batch);
      out += end > i && !rows[end - 1].fits ? fmt::format("batch {} does not fit\n", rows[end - 1].batch)
                                            : fmt::format("fits up to batch {} at least\n", last->batch);
    }
    i = end;
  }
  return out;
}

namespace {

// A mixture of experts' routing and what it gives the experts ("" without experts); `device`:
// what holds a share of the experts (a GPU, an expert's tile group).
std::string routing_line(const compiler::RoutingReport& r, const std::string& device) {
  if (r.routing.empty()) return "";
  return fmt::format(
      "  experts              {} of {} per token, routed {}{}: per layer the busiest {} reads {:.2f} experts' weights "
      "per decode step; busiest expert {:.2f}x the mean in decode, {:.2f}x in prefill{}\n",
      r.experts_per_token, r.experts, r.routing, r.routing == "uniform" ? " (assumed)" : "", device,
      r.decode.experts_used, r.decode.expert_imbalance, r.prefill.expert_imbalance,
      r.devices > 1 && r.devices < r.experts ? fmt::format("; busiest {} {:.2f}x and {:.2f}x", device,
                                                           r.decode.device_imbalance, r.prefill.device_imbalance)
                                             : "");
}

}  // namespace

std::string one_pass_line(double seconds, int64_t tokens) {
  return fmt::format("  one pass             {:10.3f} ms   ({} tokens, nothing generated: {:.1f} passes/s)\n",
                     seconds * 1e3, tokens, seconds > 0 ? 1 / seconds : 0.0);
}

std::string gpu_summary_table(const sim::GpuReport& r) {
  std::string out = fmt::format("{} on {} x {} (simulated, kernel by kernel; batch {}{})\n", r.model_name, r.gpus,
                                r.arch_name, r.batch,
                                r.expert_parallel > 1 ? fmt::format("; experts over the {} GPUs, all-to-all, "
                                                                    "attention data-parallel: {} requests each",
                                                                    r.gpus, r.batch / r.gpus)
                                                      : "");
  if (r.generated_tokens == 0) {
    out += one_pass_line(r.time_to_first_token_s, r.prompt_tokens);
    out += fmt::format("  HBM per chip         {:10.2f} GB of {:.1f} GB\n", r.hbm_used_bytes / 1e9, r.hbm_bytes / 1e9);
    out += fmt::format("  energy per pass      {:10.3f} mJ (MACs, HBM and link bytes; see docs/gpu-model.md)\n",
                       r.prefill.energy_pj * 1e-9);
    return out + routing_line(r.routing, "GPU");
  }
  out += fmt::format("  time to first token  {:10.3f} ms   ({} prompt tokens per request)\n",
                     r.time_to_first_token_s * 1e3, r.prompt_tokens);
  out += fmt::format("  decode               {:10.1f} tokens/s per user, {:.1f} in all ({} generated tokens)\n",
                     r.decode_tokens_per_s_per_user, r.decode_tokens_per_s, r.generated_tokens);
  out += fmt::format("  HBM per chip         {:10.2f} GB of {:.1f} GB\n", r.hbm_used_bytes / 1e9, r.hbm_bytes / 1e9);
  out += fmt::format("  energy per token     {:10.3f} mJ (MACs, HBM and link bytes; see docs/gpu-model.md)\n",
                     r.decode_energy_per_token_pj * 1e-9);
  if (r.tdp_watts > 0 && r.decode_watts_per_gpu > 0)
    out += fmt::format(
        "  decode power         {:10.0f} W per chip from the energy table (TDP {:.0f} W){}\n", r.decode_watts_per_gpu,
        r.tdp_watts,
        r.decode_watts_per_gpu > r.tdp_watts ? ": above TDP, so the table's upper bounds overstate it" : "");
  out += routing_line(r.routing, "GPU");
  if (r.decode.seconds <= 0) return out;
  out += fmt::format(
      "  decode time          {:.1f}% compute-bound, {:.1f}% memory-bound, {:.1f}% link, {:.1f}% launch; "
      "tensor utilisation {:.1f}%\n",
      100 * r.decode.compute_s / r.decode.seconds, 100 * r.decode.memory_s / r.decode.seconds,
      100 * r.decode.link_s / r.decode.seconds, 100 * r.decode.launch_s / r.decode.seconds, 100 * r.decode_utilization);
  return out;
}

}  // namespace tessera::report

namespace tessera::report {

std::string bsp_summary_table(const sim::BspReport& r) {
  std::string out =
      fmt::format("{} on {} (simulated, bulk-synchronous supersteps; batch {})\n", r.model_name, r.arch_name, r.batch);
  const std::string sram = fmt::format("  tile SRAM            {:10.1f} KiB of {:.1f} KiB usable (the fullest tile)\n",
                                       r.tile_bytes_used / 1024, r.tile_bytes / 1024);
  if (r.generated_tokens == 0)
    return out + one_pass_line(r.time_to_first_token_s, r.prompt_tokens) + sram +
           fmt::format("  energy per pass      {:10.4f} mJ (MACs, SRAM and exchange bytes; see docs/ipu-model.md)\n",
                       r.prefill.energy_pj * 1e-9) +
           routing_line(r.routing, "expert's tile group");
  out += fmt::format("  time to first token  {:10.3f} ms   ({} prompt tokens per request)\n",
                     r.time_to_first_token_s * 1e3, r.prompt_tokens);
  out += fmt::format("  decode               {:10.1f} tokens/s per user, {:.1f} in all ({} generated tokens)\n",
                     r.decode_tokens_per_s_per_user, r.decode_tokens_per_s, r.generated_tokens);
  out += sram;
  out += fmt::format("  energy per token     {:10.4f} mJ (MACs, SRAM and exchange bytes; see docs/ipu-model.md)\n",
                     r.decode_energy_per_token_pj * 1e-9);
  out += routing_line(r.routing, "expert's tile group");
  if (r.decode.seconds <= 0) return out;
  out += fmt::format(
      "  decode time          {:.1f}% compute, {:.1f}% exchange, {:.1f}% sync over {} supersteps per token; "
      "MAC utilisation {:.1f}%\n",
      100 * r.decode.compute_s / r.decode.seconds, 100 * r.decode.exchange_s / r.decode.seconds,
      100 * r.decode.sync_s / r.decode.seconds, r.supersteps_per_token, 100 * r.decode_utilization);
  return out;
}

}  // namespace tessera::report
