// `tessera validate`: predictions held against published measurements, one row per measurement,
// as a table, JSON, CSV and a log-log plot of predicted against published.
#pragma once

#include <string>
#include <vector>

namespace tessera::report {

struct ValidationRow {
  std::string file;           // the validation file the row came from
  std::string name;           // what was measured, in a few words
  std::string workload;       // "training", "inference" or "kernel" (a component measurement: one GEMM)
  std::string model, system;  // model: "" for a kernel
  std::string metric, unit;   // "step_s", "s"; "tokens_per_s_per_user", "tokens/s"
  double published = 0;
  std::string source, url, date;  // where the published figure comes from
  std::string note;               // what the row assumes where the source is silent
  bool predicted_ok = false;      // false: the workload does not fit (or cannot run) as configured
  double predicted = 0;
  std::string predicted_as;  // a kernel row: the algorithm and cores of the prediction ("" otherwise)
  std::string failure;       // when !predicted_ok: why
  // Why the prediction stays outside 1.5x of the figure, from first principles (the row's file says
  // it; docs/validation.md argues it). "" where the row is expected within the band.
  std::string known_gap;
  // predicted / published - 1 (positive: tessera predicts more of the metric than was measured).
  double error() const { return predicted / published - 1; }
  // No prediction, or one outside [1/1.5, 1.5] of the published figure.
  bool outside_band() const {
    const double ratio = predicted / published;
    return !predicted_ok || ratio < 1 / 1.5 || ratio > 1.5;
  }
  // A kernel row measures a component, not a system running a model: it is summarised apart.
  bool component() const { return workload == "kernel"; }
};

struct ValidationSummary {
  int rows = 0, predicted = 0;  // rows, rows with a prediction
  double median_abs_error = 0, worst_abs_error = 0;
  std::string worst_row;
  int within_1_5x = 0, within_2x = 0;  // predictions within [1/1.5, 1.5] and [1/2, 2] of the figure
  int unexplained = 0;                 // rows outside_band() whose file gives no known_gap
};

// Over the end-to-end rows (training, inference), or over the component rows (kernels).
ValidationSummary summarize(const std::vector<ValidationRow>& rows, bool components = false);
std::string validation_table(const std::vector<ValidationRow>& rows);
std::string validation_json(const std::vector<ValidationRow>& rows);
std::string validation_csv(const std::vector<ValidationRow>& rows);
// Log-log scatter of predicted / published ratio bands: each metric normalised to its published
// figure would hide the scale, so the plot puts published (x) against predicted (y) per row, with
// the y = x line and the 1.5x and 2x bands.
std::string validation_svg(const std::vector<ValidationRow>& rows);

// The rows back from validation_json's text (`origin` names the file in errors).
std::vector<ValidationRow> validation_rows_from_json(const std::string& json_text, const std::string& origin);
// `tessera report` of a validation: one self-contained HTML page with both summaries, the plot and
// every row (its error, and why it stays outside 1.5x where it does). Figures carry ids
// (`row-N-predicted`, `row-N-error`) for tests.
std::string validation_html(const std::vector<ValidationRow>& rows);

}  // namespace tessera::report
