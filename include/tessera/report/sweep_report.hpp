// What a sweep's results look like to people: a CSV of every point, a table of the Pareto front,
// a scatter of two objectives with the front drawn and a parallel-coordinates view of all of them.
#pragma once

#include <string>
#include <vector>

#include "tessera/sweep/sweep.hpp"

namespace tessera::report {

struct SweepResults {
  const sweep::Spec* spec = nullptr;
  std::vector<std::string> lines;       // results lines, by point
  std::vector<size_t> front;            // indices into lines
  std::vector<std::string> references;  // evaluate_reference lines
};

// One row per point (and reference): parameters, design metrics, every workload's metrics, on_front.
std::string sweep_csv(const SweepResults& r);
// The front's points with their parameters and objectives, best first by the first objective; then
// the references, and how many points did not fit (by resource) or were not machines.
std::string sweep_summary(const SweepResults& r);
// Objective `x` against objective `y` (indices into spec.objectives): every point, the front joined
// up, the references labelled.
std::string pareto_svg(const SweepResults& r, size_t x, size_t y);
// The same scatter as a 640 x 480 PNG (no text: the axes and labels are the SVG's).
std::string pareto_png(const SweepResults& r, size_t x, size_t y);
// One self-contained page: the summary, both plots and the sweep's settings.
std::string sweep_html(const SweepResults& r, const std::string& summary);
// One vertical axis per objective (better up), one line per point; the front's lines drawn on top.
std::string parallel_svg(const SweepResults& r);

}  // namespace tessera::report
