#include "tessera/report/compare.hpp"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

namespace tessera::report {

CompareRow compare_row(const sim::MeshReport& r, double peak_macs_per_s, double mac_pj) {
  CompareRow row;
  row.arch = r.arch_name, row.model = r.model_name, row.fits = true;
  row.time_to_first_token_s = r.time_to_first_token_s;
  row.tokens_per_s_per_user = row.tokens_per_s = r.decode_tokens_per_s;
  row.energy_per_token_j = r.decode_energy_per_token.total_pj() * 1e-12;
  // MACs per token = compute energy / energy per MAC.
  row.utilization = r.decode_energy_per_token.compute_pj / mac_pj * r.decode_tokens_per_s / peak_macs_per_s;
  const auto& d = r.decode;
  row.bound = d.comm_cycles >= d.compute_cycles && d.comm_cycles >= d.host_cycles ? "fabric"
              : d.compute_cycles >= d.host_cycles                                 ? "compute"
                                                                                  : "host I/O";
  return row;
}

CompareRow compare_row(const sim::GpuReport& r) {
  CompareRow row;
  row.arch = r.arch_name, row.model = r.model_name, row.chips = r.gpus, row.batch = r.batch, row.fits = true;
  row.time_to_first_token_s = r.time_to_first_token_s;
  row.tokens_per_s_per_user = r.decode_tokens_per_s_per_user;
  row.tokens_per_s = r.decode_tokens_per_s;
  row.energy_per_token_j = r.decode_energy_per_token_pj * 1e-12;
  row.utilization = r.decode_utilization;
  row.bound = r.decode_bound;
  return row;
}

std::string compare_table(const std::vector<CompareRow>& rows) {
  std::string out = fmt::format("{:<10} {:>5} {:>5}  {:<4} {:>10} {:>12} {:>12} {:>11} {:>7}  {}\n", "arch", "chips",
                                "batch", "fits", "TTFT ms", "tok/s/user", "tok/s total", "mJ/token", "util", "bound");
  for (const auto& r : rows) {
    if (!r.fits) {
      out += fmt::format("{:<10} {:>5} {:>5}  {:<4} {}\n", r.arch, r.chips, r.batch, "no", r.note);
      continue;
    }
    out += fmt::format("{:<10} {:>5} {:>5}  {:<4} {:>10.3f} {:>12.1f} {:>12.1f} {:>11.4f} {:>6.1f}%  {}\n", r.arch,
                       r.chips, r.batch, "yes", r.time_to_first_token_s * 1e3, r.tokens_per_s_per_user, r.tokens_per_s,
                       r.energy_per_token_j * 1e3, 100 * r.utilization, r.bound);
  }
  return out;
}

std::string compare_json(const std::vector<CompareRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows)
    out.push_back({{"arch", r.arch},
                   {"model", r.model},
                   {"chips", r.chips},
                   {"batch", r.batch},
                   {"fits", r.fits},
                   {"note", r.note},
                   {"time_to_first_token_s", r.time_to_first_token_s},
                   {"tokens_per_s_per_user", r.tokens_per_s_per_user},
                   {"tokens_per_s", r.tokens_per_s},
                   {"energy_per_token_j", r.energy_per_token_j},
                   {"utilization", r.utilization},
                   {"bound", r.bound}});
  return nlohmann::json{{"schema", "tessera-compare/1"}, {"rows", out}}.dump(1) + "\n";
}

std::string compare_csv(const std::vector<CompareRow>& rows) {
  std::string out =
      "arch,model,chips,batch,fits,time_to_first_token_s,tokens_per_s_per_user,tokens_per_s,energy_per_token_j,"
      "utilization,bound,note\n";
  for (const auto& r : rows)
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n", r.arch, r.model, r.chips, r.batch, r.fits ? 1 : 0,
                       r.time_to_first_token_s, r.tokens_per_s_per_user, r.tokens_per_s, r.energy_per_token_j,
                       r.utilization, r.bound, r.note);
  return out;
}

std::string gpu_summary_table(const sim::GpuReport& r) {
  std::string out = fmt::format("{} on {} x {} (simulated, kernel by kernel; batch {})\n", r.model_name, r.gpus,
                                r.arch_name, r.batch);
  out += fmt::format("  time to first token  {:10.3f} ms   ({} prompt tokens per request)\n",
                     r.time_to_first_token_s * 1e3, r.prompt_tokens);
  out += fmt::format("  decode               {:10.1f} tokens/s per user, {:.1f} in all ({} generated tokens)\n",
                     r.decode_tokens_per_s_per_user, r.decode_tokens_per_s, r.generated_tokens);
  out += fmt::format("  HBM per GPU          {:10.2f} GB of {:.1f} GB\n", r.hbm_used_bytes / 1e9, r.hbm_bytes / 1e9);
  out += fmt::format("  energy per token     {:10.3f} mJ (MACs, HBM and link bytes; see docs/gpu-model.md)\n",
                     r.decode_energy_per_token_pj * 1e-9);
  if (r.decode.seconds <= 0) return out;
  out += fmt::format(
      "  decode time          {:.1f}% compute-bound, {:.1f}% memory-bound, {:.1f}% link, {:.1f}% launch; "
      "tensor utilisation {:.1f}%\n",
      100 * r.decode.compute_s / r.decode.seconds, 100 * r.decode.memory_s / r.decode.seconds,
      100 * r.decode.link_s / r.decode.seconds, 100 * r.decode.launch_s / r.decode.seconds, 100 * r.decode_utilization);
  return out;
}

}  // namespace tessera::report
