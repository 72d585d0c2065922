// What training writes: beside a checkpoint, the loss curve as CSV and as an SVG plot; for one
// step on a machine (timing-only), its figures as text and JSON, its timeline as a trace, and
// several machines side by side.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tessera/target/training.hpp"

namespace tessera::report {

struct LossPoint {
  int64_t step = 0;
  double lr = 0, loss = 0, gradient_norm = 0;
  std::optional<double> held_out;
  double tokens_per_s = 0, elapsed_s = 0;
};

// Header kTrainCsvHeader, one row per step; an empty held_out field when not evaluated.
std::string loss_curve_csv(const std::vector<LossPoint>& points);
// Reads what loss_curve_csv wrote (to continue a resumed run's curve); throws Error on another file.
std::vector<LossPoint> parse_loss_curve_csv(const std::string& text, const std::string& origin);
// Training loss per step (a line) and held-out loss (dots) against step, on one self-contained SVG.
std::string loss_curve_svg(const std::vector<LossPoint>& points, const std::string& title);

// One step on `machine` (as the user named it): layout, batch, time, MFU/HFU, memory by kind,
// energy, communication, the breakdown and the assumptions, one figure per line.
std::string training_step_text(const target::TrainingReport& r, const std::string& machine);
// The same figures as JSON (schema "tessera-train-step/1"), the timeline included.
std::string training_step_json(const target::TrainingReport& r, const std::string& machine);
// The step's timeline in Chrome/Perfetto trace-event JSON: a track per pipeline stage, stream or
// collective.
std::string training_trace_json(const target::TrainingReport& r);

// One row per machine for `compare --train`: a report, or why the step does not run there.
struct TrainingCompareRow {
  std::string machine;
  std::optional<target::TrainingReport> report;
  std::string failure;
};
std::string training_compare_table(const std::vector<TrainingCompareRow>& rows);
std::string training_compare_json(const std::vector<TrainingCompareRow>& rows);

}  // namespace tessera::report
