#include "tessera/report/validation.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string_view>

#include "tessera/base/error.hpp"
#include "tessera/report/markup.hpp"
#include "tessera/report/output_files.hpp"

namespace tessera::report {

ValidationSummary summarize(const std::vector<ValidationRow>& rows, bool components) {
  ValidationSummary s;
  std::vector<double> errors;
  for (const auto& r : rows) {
    if (r.component() != components) continue;
    ++s.rows;
    if (r.outside_band() && r.known_gap.empty()) ++s.unexplained;
    if (!r.predicted_ok) continue;
    ++s.predicted;
    const double e = std::fabs(r.error());
    errors.push_back(e);
    if (e >= s.worst_abs_error) s.worst_abs_error = e, s.worst_row = r.name;
    const double ratio = r.predicted / r.published;
    if (!r.outside_band()) ++s.within_1_5x;
    if (ratio >= 0.5 && ratio <= 2) ++s.within_2x;
  }
  if (!errors.empty()) {
    std::sort(errors.begin(), errors.end());
    const size_t n = errors.size();
    s.median_abs_error = n % 2 == 1 ? errors[n / 2] : (errors[n / 2 - 1] + errors[n / 2]) / 2;
  }
  return s;
}

namespace {

// "N rows, M predicted: median |error| ..., ...": one summary as the table and the page state it.
std::string summary_sentence(const ValidationSummary& s) {
  return fmt::format(
      "{} rows, {} predicted: median |error| {:.1f}%, worst {:.1f}% ({}); {} within 1.5x, {} within 2x of the "
      "published figure; {} outside 1.5x without a known_gap",
      s.rows, s.predicted, 100 * s.median_abs_error, 100 * s.worst_abs_error, s.worst_row, s.within_1_5x, s.within_2x,
      s.unexplained);
}

}  // namespace

std::string validation_table(const std::vector<ValidationRow>& rows) {
  size_t width = std::string_view("measurement").size();
  for (const auto& r : rows) width = std::max(width, r.name.size());
  std::string out = fmt::format("{:<{}} {:<10} {:<32} {:>12} {:>12} {:>8}\n", "measurement", width, "system", "metric",
                                "published", "tessera", "error");
  for (const auto& r : rows) {
    const std::string predicted = r.predicted_ok ? fmt::format("{:.4g}", r.predicted) : "-";
    const std::string error = r.predicted_ok ? fmt::format("{:+.0f}%", 100 * r.error()) : "n/a";
    out += fmt::format("{:<{}} {:<10} {:<32} {:>12.4g} {:>12} {:>8}\n", r.name, width, r.system,
                       r.metric + " (" + r.unit + ")", r.published, predicted, error);
    if (!r.predicted_ok) out += fmt::format("    no prediction: {}\n", r.failure);
    if (!r.predicted_as.empty()) out += fmt::format("    as {}\n", r.predicted_as);
    if (r.outside_band())
      out += r.known_gap.empty() ? std::string("    outside 1.5x, not explained: give the row a known_gap\n")
                                 : fmt::format("    outside 1.5x: {}\n", r.known_gap);
    else if (!r.known_gap.empty())
      out += "    within 1.5x now: the row's known_gap is out of date\n";
  }
  for (const bool components : {false, true}) {
    const ValidationSummary s = summarize(rows, components);
    if (s.rows == 0) continue;
    out += fmt::format("{}: {}\n", components ? "component (kernel) measurements" : "end-to-end", summary_sentence(s));
  }
  return out;
}

std::string validation_json(const std::vector<ValidationRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json row = {
        {"file", r.file},     {"name", r.name}, {"workload", r.workload},   {"model", r.model},   {"system", r.system},
        {"metric", r.metric}, {"unit", r.unit}, {"published", r.published}, {"source", r.source}, {"url", r.url},
        {"date", r.date},     {"note", r.note}, {"known_gap", r.known_gap}};
    if (!r.predicted_as.empty()) row["predicted_as"] = r.predicted_as;
    if (r.predicted_ok)
      row["predicted"] = r.predicted, row["error"] = r.error();
    else
      row["predicted"] = nullptr, row["failure"] = r.failure;
    out.push_back(row);
  }
  const auto summary = [&rows](bool components) {
    const ValidationSummary s = summarize(rows, components);
    return nlohmann::json{{"rows", s.rows},
                          {"predicted", s.predicted},
                          {"median_abs_error", s.median_abs_error},
                          {"worst_abs_error", s.worst_abs_error},
                          {"worst_row", s.worst_row},
                          {"within_1_5x", s.within_1_5x},
                          {"within_2x", s.within_2x},
                          {"unexplained", s.unexplained}};
  };
  return nlohmann::json{{"schema", "tessera-validate/1"},
                        {"rows", out},
                        {"summary", summary(false)},
                        {"components", summary(true)}}
             .dump(1) +
         "\n";
}

namespace {

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string validation_csv(const std::vector<ValidationRow>& rows) {
  std::string out = std::string(kValidationCsvHeader) + "\n";
  for (const auto& r : rows)
    out +=
        fmt::format("{},{},{},{},{},{},{:.6g},{},{},{},{},{},{},{}\n", csv_field(r.name), r.workload, r.model, r.system,
                    r.metric, csv_field(r.unit), r.published, r.predicted_ok ? fmt::format("{:.6g}", r.predicted) : "",
                    r.predicted_ok ? fmt::format("{:.4f}", r.error()) : "", csv_field(r.source), r.url, r.date,
                    csv_field(r.failure), csv_field(r.known_gap));
  return out;
}

std::string validation_svg(const std::vector<ValidationRow>& rows) {
  constexpr double kSize = 520, kLeft = 70, kTop = 50, kPlot = 400;
  // Each row is drawn at (published, predicted) on log axes; rows of every metric share the plot,
  // so the axes span the decades all figures fall in.
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& r : rows) {
    lo = std::min(lo, r.published), hi = std::max(hi, r.published);
    if (r.predicted_ok && r.predicted > 0) lo = std::min(lo, r.predicted), hi = std::max(hi, r.predicted);
  }
  if (!(lo > 0) || !std::isfinite(hi)) lo = 1, hi = 10;
  const double dlo = std::floor(std::log10(lo)), dhi = std::max(dlo + 1, std::ceil(std::log10(hi)));
  auto pos = [&](double v) { return (std::log10(v) - dlo) / (dhi - dlo) * kPlot; };
  auto px = [&](double v) { return kLeft + pos(v); };
  auto py = [&](double v) { return kTop + kPlot - pos(v); };
  std::string svg =
      std::string(kSvgHead) +
      fmt::format(
          " width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
          "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
          "<text x=\"{:.0f}\" y=\"24\" font-size=\"14\">tessera against published measurements (log-log)</text>\n",
          kSize + 160, kSize + 20, kLeft);
  const double a = std::pow(10.0, dlo), b = std::pow(10.0, dhi);
  // Bands: within 2x (light) and 1.5x (darker) of the published figure, and the y = x line.
  for (const auto& [factor, shade] : {std::pair{2.0, "#eef3fb"}, std::pair{1.5, "#d6e4f5"}}) {
    svg += fmt::format(
        "<polygon fill=\"{}\" points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} "
        "{:.1f},{:.1f}\"/>\n",
        shade, px(a), py(a * factor), px(b / factor), py(b), px(b), py(b), px(b), py(b / factor), px(a * factor), py(a),
        px(a), py(a));
  }
  svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#888\"/>\n", px(a), py(a),
                     px(b), py(b));
  for (double d = dlo; d <= dhi; ++d) {
    const double v = std::pow(10.0, d);
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">1e{:.0f}</text>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">1e{:.0f}</text>\n",
        px(v), kTop + kPlot + 18, d, kLeft - 6, py(v) + 4, d);
  }
  svg += fmt::format(
      "<rect x=\"{0:.0f}\" y=\"{1:.0f}\" width=\"{2:.0f}\" height=\"{2:.0f}\" fill=\"none\" stroke=\"#444\"/>\n"
      "<text x=\"{3:.0f}\" y=\"{4:.0f}\" text-anchor=\"middle\">published</text>\n"
      "<text x=\"16\" y=\"{5:.0f}\" transform=\"rotate(-90 16 {5:.0f})\" text-anchor=\"middle\">tessera</text>\n",
      kLeft, kTop, kPlot, kLeft + kPlot / 2, kTop + kPlot + 40, kTop + kPlot / 2);
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::vector<std::string> metrics;
  for (const auto& r : rows) {
    auto it = std::find(metrics.begin(), metrics.end(), r.metric);
    if (it == metrics.end()) it = metrics.insert(metrics.end(), r.metric);
    if (!r.predicted_ok) continue;
    const char* colour = colours[static_cast<size_t>(it - metrics.begin()) % 6];
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"><title>{}: {:.4g} against {:.4g}</title>"
        "</circle>\n",
        px(r.published), py(r.predicted), colour, markup_escaped(r.name), r.predicted, r.published);
  }
  for (size_t i = 0; i < metrics.size(); ++i)
    svg += fmt::format(
        "<circle cx=\"{:.0f}\" cy=\"{:.0f}\" r=\"4\" fill=\"{}\"/><text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
        kLeft + kPlot + 20, kTop + 10 + 18 * static_cast<double>(i), colours[i % 6], kLeft + kPlot + 30,
        kTop + 14 + 18 * static_cast<double>(i), markup_escaped(metrics[i]));
  svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\">bands: 1.5x, 2x</text>\n", kLeft + kPlot + 20,
                     kTop + 24 + 18 * static_cast<double>(metrics.size()));
  return svg + "</svg>\n";
}

std::vector<ValidationRow> validation_rows_from_json(const std::string& json_text, const std::string& origin) {
  const nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || doc.value("schema", "") != "tessera-validate/1")
    fail("{}: not a tessera validation (write one with `tessera validate --json FILE`)", origin);
  std::vector<ValidationRow> rows;
  try {
    for (const auto& j : doc.at("rows")) {
      ValidationRow r;
      r.file = j.at("file"), r.name = j.at("name"), r.workload = j.at("workload"), r.model = j.at("model");
      r.system = j.at("system"), r.metric = j.at("metric"), r.unit = j.at("unit");
      r.published = j.at("published");
      r.source = j.at("source"), r.url = j.at("url"), r.date = j.at("date"), r.note = j.at("note");
      r.known_gap = j.value("known_gap", "");
      r.predicted_as = j.value("predicted_as", "");
      r.predicted_ok = !j.at("predicted").is_null();
      if (r.predicted_ok)
        r.predicted = j.at("predicted");
      else
        r.failure = j.at("failure");
      rows.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: a validation row is malformed ({}); write it again with `tessera validate --json FILE`", origin,
         e.what());
  }
  return rows;
}

std::string validation_html(const std::vector<ValidationRow>& rows) {
  std::string html = std::string(kHtmlHead) +
                     "validation</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1200px} "
                     "table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;"
                     "vertical-align:top} td.n{text-align:right} .off{background:#fdecea}</style></head><body>\n"
                     "<h1>tessera against published measurements</h1>\n";
  for (const bool components : {false, true}) {
    const ValidationSummary s = summarize(rows, components);
    if (s.rows == 0) continue;
    html +=
        fmt::format("<p id=\"{}\"><b>{}</b>: {}</p>\n", components ? "components" : "summary",
                    components ? "Component (kernel) measurements" : "End-to-end", markup_escaped(summary_sentence(s)));
  }
  const std::string svg = validation_svg(rows);
  html += svg.substr(svg.find("<svg")) +
          "<table>\n<tr><th>measurement</th><th>system</th><th>metric</th><th>published</th><th>tessera</th>"
          "<th>error</th><th>why outside 1.5x / source</th></tr>\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const ValidationRow& r = rows[i];
    const std::string why =
        !r.predicted_ok ? "no prediction: " + r.failure + (r.known_gap.empty() ? "" : "; ") : std::string();
    const std::string gap = r.outside_band() ? (r.known_gap.empty() ? "not explained" : r.known_gap) : "";
    html += fmt::format(
        "<tr{}><td>{}</td><td>{}</td><td>{} ({})</td><td class=\"n\">{:.4g}</td><td class=\"n\" "
        "id=\"row-{}-predicted\">{}</td><td class=\"n\" id=\"row-{}-error\">{}</td><td>{}<br><small>{}</small></td>"
        "</tr>\n",
        r.outside_band() ? " class=\"off\"" : "", markup_escaped(r.name), markup_escaped(r.system),
        markup_escaped(r.metric), markup_escaped(r.unit), r.published, i,
        r.predicted_ok ? fmt::format("{:.4g}", r.predicted) : "-", i,
        r.predicted_ok ? fmt::format("{:+.0f}%", 100 * r.error()) : "n/a", markup_escaped(why + gap),
        markup_escaped(r.source));
  }
  return html + "</table>\n</body></html>\n";
}

}  // namespace tessera::report
