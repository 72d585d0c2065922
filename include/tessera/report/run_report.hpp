// A run on any target, for people and for files: the summary table every run prints, its metrics
// JSON, step CSV and timeline, and per-core heatmaps where the target has cores to draw.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tessera/target/target.hpp"

namespace tessera::report {

// The run's summary table, as the target's report has it.
std::string summary_table(const target::RunReport& run);

struct RunFiles {
  std::string json, csv, trace, heatmaps;     // "" = not written
  std::vector<std::filesystem::path> inputs;  // the command's inputs, which no output may replace
  bool any() const { return !json.empty() || !csv.empty() || !trace.empty() || !heatmaps.empty(); }
};

// The run's metrics JSON (schema tessera-run/2, docs/metrics.md): the keys every target has, and
// a mesh's per-core figures where the run has them.
std::string run_json(const target::RunReport& run);

// Fails, before any work, when `files` asks for heatmaps of a machine without cores to draw.
void check_heatmaps(const RunFiles& files, bool has_cores, const std::string& arch_name);

// Writes what `files` asks for (output_files.hpp rules) and returns a line per directory written
// for people. Throws Error for --heatmaps on a target without cores to draw.
std::string write_run_files(const target::RunReport& run, const RunFiles& files);

}  // namespace tessera::report
