#include "tessera/report/mesh_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tessera/report/compare.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::report {

namespace {

std::string percent(double f) { return fmt::format("{:5.1f}%", 100 * f); }

// comm: the share of the stages' busy time spent communicating (stages overlap in prefill, so the
// phase's time is shorter than their sum).
std::string phase_row(const char* name, const sim::PhaseReport& p, double clock_hz) {
  const double busy = p.compute_cycles + p.comm_cycles + p.host_cycles;
  return fmt::format("  {:<8} {:>12.3f} ms {:>10} {:>9} {:>8}   {} compute, {} communication, {} idle\n", name,
                     p.cycles / clock_hz * 1e3, static_cast<int64_t>(p.cycles), p.passes,
                     fmt::format("{:.0f}%", busy > 0 ? 100 * p.comm_cycles / busy : 0.0),
                     percent(p.compute_core_fraction), percent(p.comm_core_fraction), percent(p.idle_core_fraction));
}

nlohmann::json energy_json(const sim::Energy& e) {
  return {{"compute_pj", e.compute_pj},
          {"sram_pj", e.sram_pj},
          {"fabric_pj", e.fabric_pj},
          {"offchip_pj", e.offchip_pj},
          {"total_pj", e.total_pj()}};
}

nlohmann::json phase_json(const sim::PhaseReport& p, double clock_hz) {
  return {
      {"passes", p.passes},
      {"cycles", p.cycles},
      {"seconds", p.cycles / clock_hz},
      {"compute_cycles", p.compute_cycles},
      {"instruction_issue_cycles", p.issue_cycles},
      {"communication_cycles", p.comm_cycles},
      {"host_cycles", p.host_cycles},
      {"core_time",
       {{"compute", p.compute_core_fraction}, {"communication", p.comm_core_fraction}, {"idle", p.idle_core_fraction}}},
      {"energy", energy_json(p.energy)}};
}

}  // namespace

std::string summary_table(const sim::MeshReport& r) {
  std::string out =
      fmt::format("{} on {} (simulated, {} fabric model; {:.2f} GHz, {} of {} cores used)\n", r.model_name, r.arch_name,
                  r.fabric_model, r.clock_hz / 1e9, r.cores_used, r.cores_usable);
  out +=
      fmt::format("  precision            {}; {:.3g} bits per stored weight\n", r.precision.describe(), r.weight_bits);
  if (!r.precision.prune.empty())
    out += fmt::format(
        "  weight sparsity      {}\n",
        !r.skip_weight_zeros ? std::string("the arch does not declare this pattern: zeros stored and multiplied")
        : r.weight_bits < storage_bits(r.precision.weights, r.precision.scales, r.precision.group)
            ? std::string("zeros skipped (the arch declares this pattern), weights stored compressed")
            : std::string("zeros skipped (the arch declares this pattern); stored dense, as the compressed form "
                          "(values + indices) would not be smaller at this density"));
  if (!r.activation_density.empty()) {
    std::string densities;
    for (const auto& [layer, d] : r.activation_density)
      densities += fmt::format("{}{} {:.1f}%", densities.empty() ? "" : ", ", layer, 100 * (1 - d));
    out += fmt::format("  zero activations     {} ({})\n", densities,
                       r.skip_zero_activations ? "skipped by the arch" : "not skipped: the arch does not declare it");
  }
  if (r.generated_tokens == 0) {
    out += one_pass_line(r.time_to_first_token_s, r.prompt_tokens);
  } else {
    out += fmt::format("  time to first token  {:10.3f} ms   ({} prompt tokens)\n", r.time_to_first_token_s * 1e3,
                       r.prompt_tokens);
    out += fmt::format("  decode               {:10.1f} tokens/s per user ({} generated tokens)\n",
                       r.decode_tokens_per_s, r.generated_tokens);
  }
  out += fmt::format("  SRAM high-water      {:10.1f} KiB per core of {:.1f} KiB usable (stage '{}')\n",
                     static_cast<double>(r.sram_high_water_bytes) / 1024, r.sram_per_core_bytes / 1024,
                     r.sram_high_water_stage);
  const auto& e = r.generated_tokens == 0 ? r.prefill.energy : r.decode_energy_per_token;
  out += fmt::format("  energy per {}     {:10.3f} mJ: compute {:.3f}, SRAM {:.3f}, fabric {:.3f}, off-chip {:.3f}\n",
                     r.generated_tokens == 0 ? "pass " : "token", e.total_pj() * 1e-9, e.compute_pj * 1e-9,
                     e.sram_pj * 1e-9, e.fabric_pj * 1e-9, e.offchip_pj * 1e-9);
  if (const auto& x = r.routing; !x.routing.empty())
    out += fmt::format(
        "  experts              {} of {} per token, routed {}{}: every core of a layer's region holds its tile of "
        "each expert and multiplies a token's {} on all of them, so the busiest expert ({:.2f}x the mean in decode, "
        "{:.2f}x in prefill) costs no time\n",
        x.experts_per_token, x.experts, x.routing, x.routing == "uniform" ? " (assumed)" : "", x.experts_per_token,
        x.decode.expert_imbalance, x.prefill.expert_imbalance);
  out += fmt::format("  {:<8} {:>15} {:>10} {:>9} {:>8}   {}\n", "phase", "time", "cycles", "passes", "comm",
                     "core-time split");
  out += phase_row("prefill", r.prefill, r.clock_hz);
  out += phase_row("decode", r.decode, r.clock_hz);
  const auto issue_share = [](const sim::PhaseReport& p) {
    return p.compute_cycles > 0 ? 100 * p.issue_cycles / p.compute_cycles : 0.0;
  };
  if (r.prefill.issue_cycles + r.decode.issue_cycles > 0)
    out += fmt::format(
        "  instruction issue    {:.0f}% of prefill's and {:.0f}% of decode's compute cycles are the vector "
        "instructions' overhead (core.vector_op_overhead)\n",
        issue_share(r.prefill), issue_share(r.decode));
  if (const auto& c = r.cycle_region; !c.stage.empty())
    out += fmt::format(
        "  cycle-level region   stage '{}': its {} collective runs take {:.0f} cycles wavelet by wavelet, {:.0f} at "
        "the {} tier ({:+.1f}%)\n",
        c.stage, c.collectives, c.cycle_level_cycles, c.reference_cycles, r.fabric_model, 100 * c.error());
  if (!r.busiest_steps.empty()) {
    out += "  busiest fabric ports (decode, per token):\n";
    for (const auto& h : r.busiest_steps)
      out += fmt::format("    {:<36} {:>8} words through the {} {} of core ({}, {})\n", h.step, h.busiest_port_words,
                         h.port_name, h.port_name == "inject" || h.port_name == "eject" ? "ramp" : "link", h.port.x,
                         h.port.y);
  }
  return out;
}

namespace {

constexpr int64_t kLinkMapCells = 100;  // the link map's long side, in cells
constexpr std::array<const char*, 4> kDirections = {"east", "west", "north", "south"};

LinkMap link_map(const std::vector<int64_t>& words, int64_t width, int64_t height) {
  LinkMap m;
  if (words.empty()) return m;
  m.block = std::max<int64_t>(1, (std::max(width, height) + kLinkMapCells - 1) / kLinkMapCells);
  m.width = (width + m.block - 1) / m.block, m.height = (height + m.block - 1) / m.block;
  for (auto& d : m.words) d.assign(static_cast<size_t>(m.width * m.height), 0.0);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (size_t d = 0; d < 4; ++d) {
        double& cell = m.words[d][static_cast<size_t>((y / m.block) * m.width + x / m.block)];
        cell = std::max(cell, static_cast<double>(words[static_cast<size_t>((y * width + x) * 4) + d]));
      }
  return m;
}

}  // namespace

RunFigures run_figures(const program::Program& plan, const sim::MeshReport& r) {
  const arch::ArchSpec a = target::parse_arch(plan.arch_yaml, plan.arch_origin);
  RunFigures run{a.grid_width,
                 a.grid_height,
                 a.usable_sram_per_core(),
                 r.prefill.cycles + r.decode.cycles,
                 {},
                 link_map(r.link_words, a.grid_width, a.grid_height)};
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const auto& st = plan.stages[s];
    run.stages.push_back({st.name, st.region, st.weight_bytes, st.kv_cache_bytes, st.activation_bytes,
                          r.stage_compute_cycles[s], r.stage_decode_energy_pj[s]});
  }
  return run;
}

std::string to_json(const program::Program& plan, const sim::MeshReport& r) {
  const RunFigures run = run_figures(plan, r);
  const arch::ArchSpec a = target::parse_arch(plan.arch_yaml, plan.arch_origin);
  nlohmann::json busiest = nlohmann::json::array(), stages = nlohmann::json::array(), steps = nlohmann::json::array();
  for (const auto& h : r.busiest_steps)
    busiest.push_back({{"step", h.step},
                       {"busiest_port_words", h.busiest_port_words},
                       {"port", {{"x", h.port.x}, {"y", h.port.y}, {"name", h.port_name}}},
                       {"word_hops", h.word_hops}});
  for (const auto& st : run.stages)
    stages.push_back(
        {{"name", st.name},
         {"region", {{"x", st.region.x}, {"y", st.region.y}, {"width", st.region.width}, {"height", st.region.height}}},
         {"cores", st.region.cores()},
         {"bytes_per_core",
          {{"weights", st.weight_bytes},
           {"kv_cache", st.kv_cache_bytes},
           {"activations", st.activation_bytes},
           {"total", st.bytes_per_core()}}},
         {"compute_cycles", st.compute_cycles},
         {"decode_energy_pj", st.decode_energy_pj}});
  for (const auto& t : r.decode_steps)
    steps.push_back({{"name", t.name},
                     {"stage", t.stage},
                     {"pattern", t.pattern},
                     {"macs_per_core", t.macs},
                     {"collective_words", t.words},
                     {"compute_cycles", t.compute_cycles},
                     {"communication_cycles", t.comm_cycles},
                     {"host_cycles", t.host_cycles},
                     {"busiest_port_words", t.busiest_port_words}});
  nlohmann::json links = nullptr;
  if (run.links.width > 0) {
    links = {{"block", run.links.block}, {"width", run.links.width}, {"height", run.links.height}};
    for (size_t d = 0; d < 4; ++d) links[kDirections[d]] = run.links.words[d];
  }
  nlohmann::json density = nlohmann::json::object();
  for (const auto& [layer, d] : r.activation_density) density[layer] = d;
  const nlohmann::json doc = {
      {"schema", "tessera-run/2"},
      {"link_load", links},
      {"model", r.model_name},
      {"arch", r.arch_name},
      {"precision",
       {{"weights", r.precision.weights},
        {"scales", resolved_scales(r.precision.weights, r.precision.scales)},
        {"group", r.precision.group},
        {"activations", r.precision.activations},
        {"kv", r.precision.kv},
        {"accumulate", a.core.accumulate},
        {"prune", r.precision.prune},
        {"weight_bits", r.weight_bits},
        {"skip_weight_zeros", r.skip_weight_zeros},
        {"skip_zero_activations", r.skip_zero_activations},
        {"activation_density", density}}},
      {"fabric_model", r.fabric_model},
      {"cycle_region", r.cycle_region.stage.empty()
                           ? nlohmann::json(nullptr)
                           : nlohmann::json{{"stage", r.cycle_region.stage},
                                            {"collectives", r.cycle_region.collectives},
                                            {"cycle_level_cycles", r.cycle_region.cycle_level_cycles},
                                            {"reference_cycles", r.cycle_region.reference_cycles},
                                            {"error", r.cycle_region.error()}}},
      {"clock_hz", r.clock_hz},
      {"grid", {{"width", run.grid_width}, {"height", run.grid_height}}},
      {"peak_macs_per_cycle_per_core", a.core.macs_per_cycle.at(r.precision.activations)},
      {"link_words_per_cycle", a.link.bytes_per_cycle / 4},
      {"cores", {{"used", r.cores_used}, {"usable", r.cores_usable}}},
      {"tokens", {{"prompt", r.prompt_tokens}, {"generated", r.generated_tokens}}},
      {"time_to_first_token_s", r.time_to_first_token_s},
      {"decode_tokens_per_s_per_user", r.decode_tokens_per_s},
      {"sram",
       {{"high_water_bytes_per_core", r.sram_high_water_bytes},
        {"high_water_stage", r.sram_high_water_stage},
        {"usable_bytes_per_core", r.sram_per_core_bytes}}},
      {"energy_per_decode_token", energy_json(r.decode_energy_per_token)},
      {"prefill", phase_json(r.prefill, r.clock_hz)},
      {"decode", phase_json(r.decode, r.clock_hz)},
      {"busiest_decode_steps", busiest},
      {"stages", stages},
      {"decode_steps", steps},
      {"config",
       {{"arch_origin", plan.arch_origin},
        {"arch_yaml", plan.arch_yaml},
        {"model_origin", plan.model_origin},
        {"model_yaml", plan.model_yaml},
        {"prompt_tokens", plan.prompt_tokens},
        {"max_new_tokens", plan.max_new_tokens},
        {"prefill_chunk_tokens", plan.prefill_chunk_tokens}}}};
  return doc.dump(1) + "\n";
}

std::string steps_csv(const sim::MeshReport& r) {
  std::string out = std::string(kStepsCsvHeader) + "\n";
  auto quoted = [](const std::string& s) { return "\"" + s + "\""; };
  for (const auto& [name, p] : {std::pair{"prefill", r.prefill}, std::pair{"decode", r.decode}})
    out += fmt::format("phase,{},,,{},{},{},{},{},,,\n", name, p.passes, p.cycles, p.compute_cycles, p.comm_cycles,
                       p.host_cycles);
  for (const auto& t : r.decode_steps)
    out += fmt::format("decode_step,{},{},{},1,{},{},{},{},{},{},{}\n", quoted(t.name),
                       t.stage >= 0 ? r.stage_names[static_cast<size_t>(t.stage)] : "host", t.pattern,
                       t.compute_cycles + t.comm_cycles + t.host_cycles, t.compute_cycles, t.comm_cycles, t.host_cycles,
                       t.macs, t.words, t.busiest_port_words);
  return out;
}

std::string trace_json(const sim::MeshReport& r) {
  nlohmann::json events = nlohmann::json::array();
  for (int phase = 0; phase < 2; ++phase) {
    events.push_back({{"name", "process_name"},
                      {"ph", "M"},
                      {"pid", phase + 1},
                      {"args", {{"name", phase ? "decode" : "prefill"}}}});
    events.push_back(
        {{"name", "thread_name"}, {"ph", "M"}, {"pid", phase + 1}, {"tid", 0}, {"args", {{"name", "host I/O"}}}});
    for (size_t s = 0; s < r.stage_names.size(); ++s)
      events.push_back({{"name", "thread_name"},
                        {"ph", "M"},
                        {"pid", phase + 1},
                        {"tid", s + 1},
                        {"args", {{"name", r.stage_names[s]}}}});
  }
  // Collectives get tracks of their own (one per kind), showing when each step's communication
  // runs; the stage tracks show whole steps.
  constexpr int kCollectiveTrackBase = 1000;
  std::vector<std::string> collective_kinds;
  for (const auto& t : r.trace)
    if (t.comm_cycles > 0 && t.pattern != "aggregate" &&
        std::find(collective_kinds.begin(), collective_kinds.end(), t.pattern) == collective_kinds.end())
      collective_kinds.push_back(t.pattern);
  for (int phase = 0; phase < 2; ++phase)
    for (size_t k = 0; k < collective_kinds.size(); ++k)
      events.push_back({{"name", "thread_name"},
                        {"ph", "M"},
                        {"pid", phase + 1},
                        {"tid", kCollectiveTrackBase + static_cast<int>(k)},
                        {"args", {{"name", "fabric: " + collective_kinds[k]}}}});
  const double us_per_cycle = 1e6 / r.clock_hz;
  for (const auto& t : r.trace) {
    if (t.comm_cycles > 0 && t.pattern != "aggregate") {
      const auto kind =
          std::find(collective_kinds.begin(), collective_kinds.end(), t.pattern) - collective_kinds.begin();
      events.push_back({{"name", t.name},
                        {"cat", "fabric"},
                        {"ph", "X"},
                        {"pid", t.decode ? 2 : 1},
                        {"tid", kCollectiveTrackBase + kind},
                        {"ts", (t.start_cycle + t.compute_cycles) * us_per_cycle},
                        {"dur", t.comm_cycles * us_per_cycle},
                        {"args",
                         {{"stage", t.stage >= 0 ? r.stage_names[static_cast<size_t>(t.stage)] : "host"},
                          {"cores", t.cores},
                          {"words", t.words},
                          {"busiest_port_words", t.busiest_port_words},
                          {"word_hops", t.word_hops},
                          {"dtype", r.precision.activations}}}});
    }
    const double cycles = t.compute_cycles + t.comm_cycles + t.host_cycles;
    events.push_back({{"name", t.name},
                      {"cat", t.pattern},
                      {"ph", "X"},
                      {"pid", t.decode ? 2 : 1},
                      {"tid", t.stage + 1},
                      {"ts", t.start_cycle * us_per_cycle},
                      {"dur", cycles * us_per_cycle},
                      {"args",
                       {{"pass", t.pass},
                        {"cycles", cycles},
                        {"compute_cycles", t.compute_cycles},
                        {"communication_cycles", t.comm_cycles},
                        {"host_cycles", t.host_cycles},
                        {"cores", t.cores},
                        {"macs_per_core", t.macs},
                        {"collective_words", t.words},
                        {"busiest_port_words", t.busiest_port_words},
                        {"word_hops", t.word_hops},
                        {"host_bytes", t.host_bytes},
                        {"dtype", r.precision.activations}}}});
  }
  return nlohmann::json{{"format", "tessera-trace/1"}, {"traceEvents", events}, {"displayTimeUnit", "ns"}}.dump() +
         "\n";
}

}  // namespace tessera::report
