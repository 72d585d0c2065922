// What a training run writes beside its checkpoint: the loss curve as CSV and as an SVG plot.
#pragma once

#include <optional>
#include <string>
#include <vector>

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

}  // namespace tessera::report
