#include "cli_support.hpp"

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/report/run_report.hpp"

namespace tessera::cli {

namespace {

void refuse_repeated_paths(const std::vector<std::string>& paths) {
  for (size_t i = 0; i < paths.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (!paths[i].empty() && paths[j] == paths[i])
        fail("{}: given for two outputs; choose a path for each (nothing was written)", paths[i]);
}

}  // namespace

void check_outputs(const std::vector<std::string>& paths, const std::vector<fs::path>& inputs) {
  refuse_repeated_paths(paths);
  for (const auto& path : paths)
    if (!path.empty()) report::check_output_path(path, inputs);
}

void check_outputs(const Outputs& out) {
  if (out.cycle_level && out.fidelity != "flow" && out.fidelity != "cycle")
    fail("--cycle-level is --fidelity cycle; it contradicts --fidelity {}", out.fidelity);
  if (!out.heatmaps.empty() && out.fidelity == "analytic")
    fail("--heatmaps draws every link's load, which --fidelity analytic does not route; use flow or cycle");
  refuse_repeated_paths({out.json, out.trace, out.csv, out.heatmaps});
  check_outputs({out.json, out.trace, out.csv}, out.inputs);
  if (!out.heatmaps.empty()) report::check_output_directory(out.heatmaps, out.inputs);
}

target::SimulateOptions simulate_options(const Outputs& out, Progress& progress) {
  return {.record_trace = !out.trace.empty(),
          .fidelity = out.cycle_level || out.fidelity == "cycle" ? target::Fidelity::Cycle
                      : out.fidelity == "analytic"               ? target::Fidelity::Analytic
                                                                 : target::Fidelity::Flow,
          .link_loads = !out.json.empty() || !out.heatmaps.empty(),
          .on_pass = [&progress](int64_t done, int64_t total) { progress.update(done, total); },
          .activation_density = {},
          .cycle_region = out.cycle_region};
}

report::RunFiles run_files(const Outputs& out) { return {out.json, out.csv, out.trace, out.heatmaps, out.inputs}; }

void report_run(const target::RunReport& run, const Outputs& out) {
  std::fputs(report::summary_table(run).c_str(), stdout);
  const report::RunFiles files = run_files(out);
  if (files.any()) std::fputs(report::write_run_files(run, files).c_str(), stdout);
}

}  // namespace tessera::cli
