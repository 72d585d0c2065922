// `sweep` as a library request: load a sweep file, run its points into DIR/results.jsonl (resuming
// what is there), then write DIR/results.csv, summary.txt, pareto.svg and .png, parallel.svg, report.html and, with
// `confirm: true`, the front re-timed at the flow tier (confirmed.jsonl). docs/sweep.md.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "tessera/report/sweep_report.hpp"
#include "tessera/sweep/sweep.hpp"

namespace tessera::api {

// Throws Error naming the file, line and key of anything malformed.
sweep::Spec load_sweep(const std::filesystem::path& spec_file);

// DIR for `spec`'s outputs: `out`, or "sweep-NAME" when empty; new, empty or tessera's own
// (never a user's directory or one holding the spec).
std::filesystem::path sweep_directory(const sweep::Spec& spec, const std::filesystem::path& spec_file,
                                      const std::string& out);

struct SweepOutcome {
  std::filesystem::path dir;
  int64_t points = 0, resumed = 0;  // in the sweep; already in the results file when it started
  std::string summary;              // what summary.txt holds
  double confirm_max_error = 0;     // largest |flow / analytic - 1| over the front's objectives
};

// Runs the points not yet in DIR/results.jsonl on `threads` threads (0: every core), then writes
// the outputs.
SweepOutcome run_sweep(const sweep::Spec& spec, const std::filesystem::path& dir, int threads,
                       const std::function<void(int64_t done, int64_t total)>& on_point = {});

// The sweep page (report.html) of a results file or a sweep directory, rebuilt from the sweep file
// its header keeps (`tessera report DIR -o PAGE.html`).
std::string sweep_page(const std::filesystem::path& results_or_dir);

// The outputs of a finished results file (what run_sweep does after its points).
SweepOutcome write_sweep_outputs(const sweep::Spec& spec, const std::filesystem::path& dir);

}  // namespace tessera::api
