// A run on any target, for people and for files: the summary table every run prints, and the
// files a run writes where its target models them (target::Capabilities::run_files).
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

// Writes what `files` asks for (output_files.hpp rules) and returns a line per directory written
// for people. Throws Error if the run's target writes no run files.
std::string write_run_files(const target::RunReport& run, const RunFiles& files);

}  // namespace tessera::report
