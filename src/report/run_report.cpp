#include "tessera/report/run_report.hpp"

#include <fmt/core.h>

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

}  // namespace

std::string summary_table(const target::RunReport& run) {
  return std::visit(Overloaded{[](const target::MeshRun& m) { return summary_table(m.report); },
                               [](const sim::GpuReport& g) { return gpu_summary_table(g); },
                               [](const sim::BspReport& b) { return bsp_summary_table(b); }},
                    run.detail);
}

std::string write_run_files(const target::RunReport& run, const RunFiles& files) {
  const auto* mesh = std::get_if<target::MeshRun>(&run.detail);
  if (!mesh)
    fail(
        "--json, --csv, --trace and --heatmaps are written for mesh machines so far; for {} use `tessera compare "
        "--arch {} --json FILE`",
        run.arch_name, run.arch_name);
  const program::Program& plan = *mesh->plan;
  if (!files.json.empty()) write_output(files.json, to_json(plan, mesh->report), files.inputs);
  if (!files.csv.empty()) write_output(files.csv, steps_csv(mesh->report), files.inputs);
  if (!files.trace.empty()) write_output(files.trace, trace_json(mesh->report), files.inputs);
  if (files.heatmaps.empty()) return "";
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
