#include "tessera/report/sweep_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tessera/report/heatmap.hpp"
#include "tessera/report/markup.hpp"
#include "tessera/report/output_files.hpp"

namespace tessera::report {

namespace {

using nlohmann::json;

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string number(double v) { return fmt::format("{:.6g}", v); }

// ",field" on the end of a CSV row.
void add_field(std::string& row, const std::string& field) {
  row += ',';
  row += field;
}

// The point's (or reference's) name in tables and plots.
std::string label_of(const json& row) {
  return row.contains("reference") ? row["reference"].get<std::string>()
                                   : fmt::format("#{}", row.value("point", int64_t{-1}));
}

struct Axis {
  double lo = INFINITY, hi = -INFINITY;
  bool log = false;
  void add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  void finish() {
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    // Objectives spanning more than two decades are drawn on a log axis.
    log = lo > 0 && hi / lo > 100;
    if (hi == lo) hi = lo + (lo == 0 ? 1 : std::fabs(lo) * 0.1), lo -= (lo == 0 ? 0 : std::fabs(lo) * 0.1);
  }
  double value_at(double t) const {  // the value at `t` of the way along (0..1)
    return log ? std::pow(10, std::log10(lo) + t * (std::log10(hi) - std::log10(lo))) : lo + t * (hi - lo);
  }
  double at(double v) const {  // 0..1
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

std::string svg_open(double width, double height, const std::string& title) {
  return std::string(kSvgHead) +
         fmt::format(
             " width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" font-size=\"12\">\n"
             "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
             "<text x=\"20\" y=\"24\" font-size=\"14\">{}</text>\n",
             width, height, markup_escaped(title));
}

std::string goal_text(const sweep::Objective& o) {
  return o.label() + (o.maximize ? " (higher is better)" : " (lower is better)");
}

}  // namespace

std::string sweep_csv(const SweepResults& r) {
  const sweep::Spec& spec = *r.spec;
  std::string out = "point";
  for (const auto& p : spec.parameters) add_field(out, csv_field(p.key));
  for (const auto& m : sweep::kDesignMetrics) add_field(out, m);
  for (const auto& w : spec.workloads) {
    add_field(out, csv_field(w.name + ".fits"));
    for (const auto& m : (w.training ? sweep::kTrainingMetrics : sweep::kWorkloadMetrics))
      add_field(out, csv_field(w.name + "." + m));
  }
  out += ",on_front,over_power,problem\n";
  const std::set<size_t> front(r.front.begin(), r.front.end());
  auto row_text = [&](const std::string& line, bool on_front) {
    const json row = json::parse(line);
    std::string s = csv_field(label_of(row));
    for (const auto& p : spec.parameters)
      add_field(s, csv_field(row.contains("values") ? row["values"].value(p.key, "") : ""));
    for (const auto& m : sweep::kDesignMetrics)
      add_field(s, (row.contains("design") ? number(row["design"].value(m, 0.0)) : ""));
    std::string problem = row.value("error", "");
    for (const auto& w : spec.workloads) {
      const json wl = row.contains("workloads") ? row["workloads"].value(w.name, json::object()) : json::object();
      const bool fits = wl.value("fits", false);
      add_field(s, fits ? "yes" : "no");
      for (const auto& m : (w.training ? sweep::kTrainingMetrics : sweep::kWorkloadMetrics))
        add_field(s, fits && wl.contains(m) && wl[m].is_number() ? number(wl[m].get<double>()) : "");
      if (!fits && problem.empty() && wl.contains("note")) problem = w.name + ": " + wl["note"].get<std::string>();
    }
    s += fmt::format(",{},{},{}\n", on_front ? "yes" : "no", row.value("over_power", false) ? "yes" : "no",
                     csv_field(problem));
    return s;
  };
  for (size_t i = 0; i < r.lines.size(); ++i) out += row_text(r.lines[i], front.contains(i));
  for (const auto& ref : r.references) out += row_text(ref, false);
  return out;
}

std::string sweep_summary(const SweepResults& r) {
  const sweep::Spec& spec = *r.spec;
  std::vector<size_t> order = r.front;
  const sweep::Objective& first = spec.objectives.front();
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double va = *sweep::objective_value(r.lines[a], first), vb = *sweep::objective_value(r.lines[b], first);
    return first.maximize ? va > vb : va < vb;
  });
  std::string out = fmt::format("Pareto front: {} of {} designs\n", r.front.size(), r.lines.size());
  auto describe = [&](const std::string& line) {
    const json row = json::parse(line);
    std::string s = fmt::format("  {:<8}", label_of(row));
    if (row.contains("values"))
      for (const auto& p : spec.parameters) s += fmt::format(" {}={}", p.key, row["values"].value(p.key, ""));
    s += "\n          ";
    for (const auto& o : spec.objectives) {
      const auto v = sweep::objective_value(line, o);
      s += fmt::format(" {}={}", o.label(), v ? fmt::format("{:.4g}", *v) : std::string("-"));
    }
    return s + "\n";
  };
  for (size_t i : order) out += describe(r.lines[i]);
  if (!r.references.empty()) {
    out += "References (as shipped):\n";
    for (const auto& ref : r.references) out += describe(ref);
  }
  std::map<std::string, int> misfits;
  int errors = 0;
  for (const auto& line : r.lines) {
    const json row = json::parse(line);
    if (row.contains("error")) {
      ++errors;
      continue;
    }
    for (const auto& [name, w] : row["workloads"].items())
      if (!w.value("fits", false)) ++misfits[name + ": " + w.value("resource", std::string("does not run"))];
  }
  for (const auto& [what, count] : misfits) out += fmt::format("{} designs do not fit ({})\n", count, what);
  if (errors > 0) out += fmt::format("{} points are not machines (see the CSV's problem column)\n", errors);
  return out;
}

namespace {

struct Dot {
  double x, y;
  std::string label;
};

// Two objectives of every point, the front (sorted along x) and the references, with their axes.
struct Scatter {
  std::vector<Dot> all, front, refs;
  Axis ax, ay;
};

Scatter scatter(const SweepResults& r, const sweep::Objective& ox, const sweep::Objective& oy) {
  Scatter s;
  auto dot = [&](const std::string& line) -> std::optional<Dot> {
    const auto x = sweep::objective_value(line, ox), y = sweep::objective_value(line, oy);
    if (!x || !y) return std::nullopt;
    s.ax.add(*x), s.ay.add(*y);
    return Dot{*x, *y, label_of(json::parse(line))};
  };
  for (const auto& line : r.lines)
    if (auto d = dot(line)) s.all.push_back(*d);
  for (size_t i : r.front)
    if (auto d = dot(r.lines[i])) s.front.push_back(*d);
  for (const auto& line : r.references)
    if (auto d = dot(line)) s.refs.push_back(*d);
  s.ax.finish(), s.ay.finish();
  std::sort(s.front.begin(), s.front.end(), [](const Dot& a, const Dot& b) { return a.x < b.x; });
  return s;
}

}  // namespace

std::string pareto_png(const SweepResults& r, size_t xi, size_t yi) {
  const Scatter s = scatter(r, r.spec->objectives.at(xi), r.spec->objectives.at(yi));
  constexpr int64_t kW = 640, kH = 480, kMargin = 30;
  std::vector<uint8_t> rgb(static_cast<size_t>(kW * kH * 3), 255);
  const auto put = [&](int64_t x, int64_t y, std::array<uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= kW || y >= kH) return;
    std::copy(c.begin(), c.end(), rgb.begin() + static_cast<std::ptrdiff_t>(3 * (y * kW + x)));
  };
  const auto px = [&](double v) { return kMargin + std::llround(s.ax.at(v) * (kW - 2 * kMargin)); };
  const auto py = [&](double v) { return kH - kMargin - std::llround(s.ay.at(v) * (kH - 2 * kMargin)); };
  const auto disc = [&](int64_t cx, int64_t cy, int64_t radius, std::array<uint8_t, 3> c) {
    for (int64_t dy = -radius; dy <= radius; ++dy)
      for (int64_t dx = -radius; dx <= radius; ++dx)
        if (dx * dx + dy * dy <= radius * radius) put(cx + dx, cy + dy, c);
  };
  const std::array<uint8_t, 3> frame{68, 68, 68}, grey{153, 170, 187}, red{214, 39, 40}, green{44, 160, 44};
  for (int64_t x = kMargin; x <= kW - kMargin; ++x) put(x, kMargin, frame), put(x, kH - kMargin, frame);
  for (int64_t y = kMargin; y <= kH - kMargin; ++y) put(kMargin, y, frame), put(kW - kMargin, y, frame);
  for (const Dot& d : s.all) disc(px(d.x), py(d.y), 3, grey);
  for (size_t i = 1; i < s.front.size(); ++i) {  // the front joined up, as the SVG draws it
    const auto x0 = static_cast<double>(px(s.front[i - 1].x)), y0 = static_cast<double>(py(s.front[i - 1].y));
    const auto x1 = static_cast<double>(px(s.front[i].x)), y1 = static_cast<double>(py(s.front[i].y));
    const auto steps = static_cast<int64_t>(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))) + 1;
    for (int64_t k = 0; k <= steps; ++k) {
      const double t = static_cast<double>(k) / static_cast<double>(steps);
      disc(std::llround(x0 + t * (x1 - x0)), std::llround(y0 + t * (y1 - y0)), 1, red);
    }
  }
  for (const Dot& d : s.front) disc(px(d.x), py(d.y), 4, red);
  for (const Dot& d : s.refs)
    for (int64_t dy = -4; dy <= 4; ++dy)
      for (int64_t dx = -4; dx <= 4; ++dx) put(px(d.x) + dx, py(d.y) + dy, green);
  return png_file(kW, kH, rgb);
}

std::string pareto_svg(const SweepResults& r, size_t xi, size_t yi) {
  const sweep::Spec& spec = *r.spec;
  const sweep::Objective &ox = spec.objectives.at(xi), &oy = spec.objectives.at(yi);
  constexpr double kLeft = 80, kTop = 50, kW = 520, kH = 380;
  const Scatter sc = scatter(r, ox, oy);
  const auto &all = sc.all, &front = sc.front, &refs = sc.refs;
  const Axis &ax = sc.ax, &ay = sc.ay;
  auto px = [&](double v) { return kLeft + ax.at(v) * kW; };
  auto py = [&](double v) { return kTop + kH - ay.at(v) * kH; };
  std::string svg = svg_open(kLeft + kW + 40, kTop + kH + 70,
                             fmt::format("{}: {} designs, Pareto front in red", spec.name, all.size()));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", kLeft,
                     kTop, kW, kH);
  for (int t = 0; t <= 4; ++t) {
    const double fx = t / 4.0;
    const double vx = ax.value_at(fx), vy = ay.value_at(fx);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.3g}</text>\n", kLeft + fx * kW,
                       kTop + kH + 16, vx);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", kLeft - 6,
                       kTop + kH - fx * kH + 4, vy);
  }
  svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" text-anchor=\"middle\">{}{}</text>\n", kLeft + kW / 2,
                     kTop + kH + 40, markup_escaped(goal_text(ox)), ax.log ? ", log" : "");
  svg += fmt::format(
      "<text x=\"16\" y=\"{0:.0f}\" transform=\"rotate(-90 16 {0:.0f})\" text-anchor=\"middle\">{1}{2}</text>\n",
      kTop + kH / 2, markup_escaped(goal_text(oy)), ay.log ? ", log" : "");
  for (const Dot& d : all)
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"#9ab\"><title>{}</title></circle>\n",
                       px(d.x), py(d.y), markup_escaped(d.label));
  std::string path;
  for (const Dot& d : front) path += fmt::format("{:.1f},{:.1f} ", px(d.x), py(d.y));
  svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n", path);
  for (const Dot& d : front)
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#d62728\"><title>{}</title></circle>\n",
                       px(d.x), py(d.y), markup_escaped(d.label));
  for (const Dot& d : refs)
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"8\" height=\"8\" fill=\"#2ca02c\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
        px(d.x) - 4, py(d.y) - 4, px(d.x) + 7, py(d.y) - 6, markup_escaped(d.label));
  return svg + "</svg>\n";
}

std::string sweep_html(const SweepResults& r, const std::string& summary) {
  const sweep::Spec& spec = *r.spec;
  std::string html =
      kHtmlHead + fmt::format(
                      "sweep {0}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}"
                      "pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>\n"
                      "<h1>Sweep {0}</h1>\n<p>{1} designs on {2} workloads, base {3}{4}.</p>\n",
                      markup_escaped(spec.name), r.lines.size(), spec.workloads.size(),
                      markup_escaped(spec.base_origin),
                      spec.area_mm2 > 0 ? fmt::format(", each filling {:.0f} mm2", spec.area_mm2) : "");
  html += "<h2>Pareto front</h2>\n<pre>" + markup_escaped(summary) + "</pre>\n";
  html += "<h2>Trade-off</h2>\n" + pareto_svg(r, 0, 1) + "<h2>Every objective</h2>\n" + parallel_svg(r);
  return html + "</body></html>\n";
}

std::string parallel_svg(const SweepResults& r) {
  const sweep::Spec& spec = *r.spec;
  const size_t n = spec.objectives.size();
  constexpr double kLeft = 60, kTop = 60, kH = 340, kGap = 170;
  std::vector<Axis> axes(n);
  std::vector<std::vector<double>> rows;
  std::vector<bool> on_front;
  const std::set<size_t> front(r.front.begin(), r.front.end());
  for (size_t i = 0; i < r.lines.size(); ++i) {
    std::vector<double> v;
    for (const auto& o : spec.objectives) {
      const auto x = sweep::objective_value(r.lines[i], o);
      if (!x) break;
      v.push_back(*x);
    }
    if (v.size() != n) continue;
    for (size_t k = 0; k < n; ++k) axes[k].add(v[k]);
    rows.push_back(v), on_front.push_back(front.contains(i));
  }
  for (auto& a : axes) a.finish();
  // Better is up on every axis.
  auto y = [&](size_t k, double v) {
    const double t = axes[k].at(v);
    return kTop + kH - (spec.objectives[k].maximize ? t : 1 - t) * kH;
  };
  const double width = kLeft * 2 + kGap * static_cast<double>(n - 1) + 40;
  std::string svg =
      svg_open(width, kTop + kH + 60,
               fmt::format("{}: every design on every objective (better is up; front in red)", spec.name));
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < rows.size(); ++i) {
      if (on_front[i] != (pass == 1)) continue;
      std::string points;
      for (size_t k = 0; k < n; ++k)
        points += fmt::format("{:.1f},{:.1f} ", kLeft + kGap * static_cast<double>(k), y(k, rows[i][k]));
      svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-opacity=\"{}\"/>\n", points,
                         pass == 1 ? "#d62728" : "#9ab", pass == 1 ? "0.9" : "0.35");
    }
  for (size_t k = 0; k < n; ++k) {
    const double x = kLeft + kGap * static_cast<double>(k);
    const auto& o = spec.objectives[k];
    const double best = o.maximize ? axes[k].hi : axes[k].lo, worst = o.maximize ? axes[k].lo : axes[k].hi;
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.0f}\" x2=\"{0:.1f}\" y2=\"{2:.0f}\" stroke=\"#444\"/>\n"
        "<text x=\"{0:.1f}\" y=\"{3:.0f}\" text-anchor=\"middle\">{4:.3g}</text>"
        "<text x=\"{0:.1f}\" y=\"{5:.0f}\" text-anchor=\"middle\">{6:.3g}</text>"
        "<text x=\"{0:.1f}\" y=\"{7:.0f}\" text-anchor=\"middle\">{8}</text>\n",
        x, kTop, kTop + kH, kTop - 6, best, kTop + kH + 16, worst, kTop + kH + 36, markup_escaped(o.label()));
  }
  return svg + "</svg>\n";
}

}  // namespace tessera::report
