#include "tessera/report/training_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tessera/base/error.hpp"
#include "tessera/report/markup.hpp"
#include "tessera/report/output_files.hpp"

namespace tessera::report {

std::string loss_curve_csv(const std::vector<LossPoint>& points) {
  std::string out = std::string(kTrainCsvHeader) + "\n";
  for (const auto& p : points)
    out += fmt::format("{},{:.6e},{:.7f},{:.6e},{},{:.1f},{:.3f}\n", p.step, p.lr, p.loss, p.gradient_norm,
                       p.held_out ? fmt::format("{:.7f}", *p.held_out) : "", p.tokens_per_s, p.elapsed_s);
  return out;
}

std::vector<LossPoint> parse_loss_curve_csv(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kTrainCsvHeader)
    fail("{}: not a loss curve tessera train wrote (header '{}' expected)", origin, kTrainCsvHeader);
  std::vector<LossPoint> points;
  for (int64_t row = 2; std::getline(in, line); ++row) {
    std::vector<std::string> fields;
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) fields.push_back(cell);
    if (line.ends_with(',')) fields.emplace_back();
    if (fields.size() != 7) fail("{}:{}: expected 7 fields, got {}", origin, row, fields.size());
    try {
      LossPoint p{std::stoll(fields[0]), std::stod(fields[1]), std::stod(fields[2]), std::stod(fields[3]), {},
                  std::stod(fields[5]),  std::stod(fields[6])};
      if (!fields[4].empty()) p.held_out = std::stod(fields[4]);
      points.push_back(p);
    } catch (const std::exception&) {
      fail("{}:{}: a field is not a number", origin, row);
    }
  }
  return points;
}

std::string loss_curve_svg(const std::vector<LossPoint>& points, const std::string& title) {
  constexpr double kWidth = 640, kHeight = 400, kLeft = 60, kRight = 20, kTop = 40, kBottom = 50;
  double lo = INFINITY, hi = -INFINITY;
  int64_t last = 1;
  for (const auto& p : points) {
    lo = std::min(lo, p.loss), hi = std::max(hi, p.loss), last = std::max(last, p.step);
    if (p.held_out) lo = std::min(lo, *p.held_out), hi = std::max(hi, *p.held_out);
  }
  if (points.empty()) lo = 0, hi = 1;
  if (hi - lo < 1e-6) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  auto x = [&](double step) { return kLeft + (kWidth - kLeft - kRight) * step / static_cast<double>(last); };
  auto y = [&](double loss) { return kTop + (kHeight - kTop - kBottom) * (hi - loss) / (hi - lo); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.0f}\" y=\"22\" font-size=\"14\">{}</text>\n",
      kWidth, kHeight, kLeft, markup_escaped(title));
  for (int i = 0; i <= 5; ++i) {
    const double loss = lo + (hi - lo) * i / 5.0, yy = y(loss);
    svg += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2f}</text>\n",
        kLeft, yy, kWidth - kRight, yy, kLeft - 6, yy + 4, loss);
    const double step = static_cast<double>(last) * i / 5.0;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.0f}</text>\n", x(step),
                       kHeight - kBottom + 16, step);
  }
  svg += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">step</text>\n"
      "<text x=\"14\" y=\"{:.1f}\" transform=\"rotate(-90 14 {:.1f})\" text-anchor=\"middle\">loss (nats/token)"
      "</text>\n",
      (kLeft + kWidth - kRight) / 2, kHeight - 12, (kTop + kHeight - kBottom) / 2, (kTop + kHeight - kBottom) / 2);
  std::string line;
  for (const auto& p : points) line += fmt::format("{:.1f},{:.1f} ", x(static_cast<double>(p.step)), y(p.loss));
  svg += fmt::format("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.2\" points=\"{}\"/>\n", line);
  for (const auto& p : points)
    if (p.held_out)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"#d62728\"/>\n",
                         x(static_cast<double>(p.step)), y(*p.held_out));
  svg += fmt::format(
      "<line x1=\"{0:.0f}\" y1=\"{1:.0f}\" x2=\"{2:.0f}\" y2=\"{1:.0f}\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
      "<text x=\"{3:.0f}\" y=\"{4:.0f}\">training loss</text>\n"
      "<circle cx=\"{5:.0f}\" cy=\"{1:.0f}\" r=\"3.5\" fill=\"#d62728\"/><text x=\"{6:.0f}\" y=\"{4:.0f}\">held-out "
      "loss</text>\n</svg>\n",
      kWidth - 260, kTop - 8, kWidth - 236, kWidth - 230, kTop - 4, kWidth - 120, kWidth - 110);
  return svg;
}

}  // namespace tessera::report
