#include "tessera/report/run_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <tuple>

#include "tessera/base/error.hpp"
#include "tessera/report/compare.hpp"
#include "tessera/report/heatmap.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/report/output_files.hpp"

namespace tessera::report {

namespace {

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;  // clang 14 does not deduce aggregates' template arguments

}  // namespace

std::string summary_table(const target::RunReport& run) {
  return std::visit(Overloaded{[](const target::MeshRun& m) { return summary_table(m.report); },
                               [](const sim::GpuReport& g) { return gpu_summary_table(g); },
                               [](const sim::BspReport& b) { return bsp_summary_table(b); }},
                    run.detail);
}

namespace {

nlohmann::json steps_json(const std::vector<target::StepRecord>& steps) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& st : steps)
    out.push_back({{"name", st.name},
                   {"op", st.op},
                   {"bound", st.bound},
                   {"seconds", st.seconds},
                   {"macs", st.macs},
                   {"bytes", st.bytes}});
  return out;
}

// The keys every run JSON has, whatever its target (docs/metrics.md).
nlohmann::json common_json(const target::RunReport& run) {
  return {{"schema", "tessera-run/2"},
          {"fabric", run.fabric},
          {"arch", run.arch_name},
          {"model", run.model_name},
          {"time_to_first_token_s", run.time_to_first_token_s},
          {"decode_tokens_per_s_per_user", run.tokens_per_s_per_user},
          {"utilization", run.utilization},
          {"bound", run.bound},
          {"memory",
           {{"resource", run.memory.resource},
            {"used_bytes", run.memory.used_bytes},
            {"available_bytes", run.memory.available_bytes}}},
          {"steps",
           {{"prefill_last_pass", steps_json(run.prefill_steps)},
            {"decode_last_pass", steps_json(run.last_decode_steps)}}}};
}

// A mixture of experts' routing and what it gives the experts (docs/metrics.md); nothing without
// experts. On a mesh the "device" is a layer's region, which holds every expert.
void add_routing(nlohmann::json& doc, const target::RunReport& run) {
  const compiler::RoutingReport routing = std::visit(
      Overloaded{[](const target::MeshRun& m) { return m.report.routing; },
                 [](const sim::GpuReport& g) { return g.routing; }, [](const sim::BspReport& b) { return b.routing; }},
      run.detail);
  if (routing.routing.empty()) return;
  const auto loads = [](const compiler::ExpertLoads& l) {
    return nlohmann::json{{"experts_used", l.experts_used},
                          {"expert_imbalance", l.expert_imbalance},
                          {"device_imbalance", l.device_imbalance}};
  };
  doc["routing"] = {{"routing", routing.routing},
                    {"experts", routing.experts},
                    {"experts_per_token", routing.experts_per_token},
                    {"prefill", loads(routing.prefill)},
                    {"decode", loads(routing.decode)}};
}

// A run with values: its prompt's and generated tokens' ids beside their counts.
void add_token_ids(nlohmann::json& doc, const target::RunReport& run) {
  if (run.prompt_ids.empty()) return;
  doc["tokens"]["prompt_ids"] = run.prompt_ids;
  doc["tokens"]["generated_ids"] = run.generated_ids;
  for (const auto& m : run.mask_predictions)
    doc["tokens"]["masks"].push_back(
        {{"position", m.position}, {"ids", m.ids}, {"probabilities", m.probabilities}, {"tokens", m.tokens}});
}

// A run JSON for targets without a mesh's per-core figures.
std::string chip_run_json(const target::RunReport& run) {
  nlohmann::json doc = common_json(run);
  const auto passes = std::max<int64_t>(run.generated_tokens - 1, 0);
  doc["precision"] = {{"weights", run.precision.weights}, {"scales", run.precision.scales},
                      {"group", run.precision.group},     {"activations", run.precision.activations},
                      {"kv", run.precision.kv},           {"prune", run.precision.prune}};
  doc["tokens"] = {{"prompt", run.prompt_tokens}, {"generated", run.generated_tokens}, {"batch", run.batch}};
  add_token_ids(doc, run);
  doc["decode_tokens_per_s"] = run.tokens_per_s;
  doc["prefill"] = {{"seconds", run.prefill_s}, {"passes", 1}};
  doc["decode"] = {{"seconds", run.decode_s}, {"passes", passes}};
  doc["energy_per_decode_token"] = {{"total_pj", run.energy_per_token_pj}};
  add_routing(doc, run);
  doc["config"] = {{"arch_origin", run.arch_origin},
                   {"arch_yaml", run.arch_yaml},
                   {"model_origin", run.model_origin},
                   {"model_yaml", run.model_yaml}};
  return doc.dump(1) + "\n";
}

std::string chip_steps_csv(const target::RunReport& run) {
  std::string out = std::string(kChipStepsCsvHeader) + "\n";
  for (const auto& [phase, steps] :
       {std::pair{"prefill", &run.prefill_steps}, std::pair{"decode", &run.last_decode_steps}})
    for (const auto& st : *steps)
      out += fmt::format("{},\"{}\",{},{},{},{},{}\n", phase, st.name, st.op, st.bound, st.seconds, st.macs, st.bytes);
  return out;
}

// The timeline of a run without per-step detail for every pass: each phase's earlier passes as
// one slice, then its last pass step by step (Chrome trace-event format; times in microseconds).
std::string chip_trace_json(const target::RunReport& run) {
  nlohmann::json events = nlohmann::json::array();
  const auto meta = [&](int pid, int tid, const char* what, const std::string& name) {
    events.push_back({{"ph", "M"}, {"pid", pid}, {"tid", tid}, {"name", what}, {"args", {{"name", name}}}});
  };
  meta(1, 0, "process_name", "prefill");
  meta(2, 0, "process_name", "decode");
  double start_us = 0;
  for (const auto& [pid, total_s, steps] :
       {std::tuple{1, run.prefill_s, &run.prefill_steps}, std::tuple{2, run.decode_s, &run.last_decode_steps}}) {
    meta(pid, 0, "thread_name", pid == 1 ? "earlier prompt passes" : "earlier decode passes");
    meta(pid, 1, "thread_name", "last pass, step by step");
    double detailed_s = 0;
    for (const auto& st : *steps) detailed_s += st.seconds;
    const double earlier_s = std::max(0.0, total_s - detailed_s);
    if (earlier_s > 0)
      events.push_back({{"ph", "X"},
                        {"pid", pid},
                        {"tid", 0},
                        {"name", pid == 1 ? "prompt passes" : "decode passes"},
                        {"ts", start_us},
                        {"dur", earlier_s * 1e6}});
    double at = start_us + earlier_s * 1e6;
    for (const auto& st : *steps) {
      events.push_back({{"ph", "X"},
                        {"pid", pid},
                        {"tid", 1},
                        {"name", st.name},
                        {"cat", st.op},
                        {"ts", at},
                        {"dur", st.seconds * 1e6},
                        {"args", {{"bound", st.bound}, {"macs", st.macs}, {"bytes", st.bytes}}}});
      at += st.seconds * 1e6;
    }
    start_us += total_s * 1e6;
  }
  return nlohmann::json{{"format", "tessera-trace/1"}, {"traceEvents", events}, {"displayTimeUnit", "ns"}}.dump() +
         "\n";
}

}  // namespace

std::string run_json(const target::RunReport& run) {
  const auto* mesh = std::get_if<target::MeshRun>(&run.detail);
  if (!mesh) return chip_run_json(run);
  nlohmann::json doc = nlohmann::json::parse(to_json(*mesh->plan, mesh->report));
  doc.update(common_json(run));
  add_token_ids(doc, run);
  add_routing(doc, run);
  return doc.dump(1) + "\n";
}

void check_heatmaps(const RunFiles& files, bool has_cores, const std::string& arch_name) {
  if (!has_cores && !files.heatmaps.empty())
    fail("--heatmaps draws the cores of a mesh machine; {} has none to draw (--json, --csv and --trace work)",
         arch_name);
}

std::string write_run_files(const target::RunReport& run, const RunFiles& files) {
  const auto* mesh = std::get_if<target::MeshRun>(&run.detail);
  check_heatmaps(files, mesh != nullptr, run.arch_name);
  if (!files.json.empty()) write_output(files.json, run_json(run), files.inputs);
  if (!files.csv.empty()) write_output(files.csv, mesh ? steps_csv(mesh->report) : chip_steps_csv(run), files.inputs);
  if (!files.trace.empty())
    write_output(files.trace, mesh ? trace_json(mesh->report) : chip_trace_json(run), files.inputs);
  if (files.heatmaps.empty()) return "";
  const program::Program& plan = *mesh->plan;
  const auto dir = prepare_output_directory(files.heatmaps, files.inputs);
  const char* names[] = {"sram", "compute", "energy", "links-east", "links-west", "links-north", "links-south"};
  const auto maps = mesh_heatmaps(run_figures(plan, mesh->report));
  for (size_t i = 0; i < maps.size(); ++i) {
    write_into_output_directory(dir, std::string(names[i]) + ".svg", heatmap_svg(maps[i]));
    write_into_output_directory(dir, std::string(names[i]) + ".png", heatmap_png(maps[i]));
  }
  return fmt::format(
      "  heatmaps: {}/{{sram,compute,energy,links-east,links-west,links-north,links-south}}.{{svg,png}}\n",
      files.heatmaps);
}

}  // namespace tessera::report
