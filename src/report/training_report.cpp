#include "tessera/report/training_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
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

namespace tessera::report {

namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

// The unit the memory's size reads best in (a wafer core's SRAM is KiB, a GPU's HBM GiB).
std::pair<double, const char*> memory_unit(double available) {
  if (available >= kGiB) return {kGiB, "GiB"};
  if (available >= 1024.0 * 1024) return {1024.0 * 1024, "MiB"};
  return {1024.0, "KiB"};
}

nlohmann::json report_json(const target::TrainingReport& r) {
  nlohmann::json breakdown = nlohmann::json::array();
  for (const auto& [part, seconds] : r.breakdown) breakdown.push_back({{"part", part}, {"seconds", seconds}});
  const double tokens = static_cast<double>(r.global_batch * r.seq);
  return {{"arch", r.arch_name},
          {"model", r.model_name},
          {"mode", r.mode},
          {"layout", r.layout},
          {"chips", r.chips},
          {"global_batch", r.global_batch},
          {"seq", r.seq},
          {"micro_batches", r.micro_batches},
          {"recompute", ir::recompute_name(r.recompute)},
          {"step_s", r.step_s},
          {"tokens_per_s", r.tokens_per_s},
          {"mfu", r.mfu},
          {"hfu", r.hfu},
          {"model_flops_per_step", r.model_flops_per_step},
          {"hardware_flops_per_step", r.hardware_flops_per_step},
          {"energy_per_step_j", r.energy_per_step_j},
          {"energy_per_token_j", r.energy_per_step_j / tokens},
          {"communication_share", r.communication_share},
          {"bubble_fraction", r.bubble_fraction},
          {"bound", r.bound},
          {"memory",
           {{"resource", r.memory.resource},
            {"weights_bytes", r.memory.weights},
            {"gradients_bytes", r.memory.gradients},
            {"optimizer_bytes", r.memory.optimizer},
            {"activations_bytes", r.memory.activations},
            {"used_bytes", r.memory.used()},
            {"available_bytes", r.memory.available}}},
          {"breakdown", breakdown},
          {"assumptions", r.assumptions}};
}

}  // namespace

std::string training_step_text(const target::TrainingReport& r, const std::string& machine) {
  std::string out = fmt::format("training {} on {} ({}; timing only)\n", r.model_name, machine, r.mode);
  out += fmt::format("  layout               {}\n", r.layout);
  out += fmt::format("  batch                {} sequences x {} tokens = {} tokens per step, recompute {}\n",
                     r.global_batch, r.seq, r.global_batch * r.seq, ir::recompute_name(r.recompute));
  out += fmt::format("  step time            {:.4g} s   ({:.4g} tokens/s; 1T tokens in {:.3g} days)\n", r.step_s,
                     r.tokens_per_s, 1e12 / r.tokens_per_s / 86400);
  out += fmt::format("  MFU / HFU            {:.1f}% / {:.1f}%   ({:.3g} model FLOPs per step)\n", 100 * r.mfu,
                     100 * r.hfu, r.model_flops_per_step);
  const auto [unit, unit_name] = memory_unit(r.memory.available);
  out += fmt::format(
      "  memory ({})  {:.2f} {} of {:.2f}: weights {:.2f}, gradients {:.2f}, optimizer {:.2f}, activations {:.2f}\n",
      r.memory.resource, r.memory.used() / unit, unit_name, r.memory.available / unit, r.memory.weights / unit,
      r.memory.gradients / unit, r.memory.optimizer / unit, r.memory.activations / unit);
  out += fmt::format("  energy               {:.4g} J per step, {:.4g} J per token\n", r.energy_per_step_j,
                     r.energy_per_step_j / static_cast<double>(r.global_batch * r.seq));
  out += fmt::format("  communication        {:.1f}% of the step; pipeline bubble {:.1f}%; bound: {}\n",
                     100 * r.communication_share, 100 * r.bubble_fraction, r.bound);
  out += "  step breakdown\n";
  for (const auto& [part, seconds] : r.breakdown)
    out += fmt::format("    {:<48} {:9.4f} s  {:5.1f}%\n", part, seconds, 100 * seconds / r.step_s);
  out += "  assumptions\n";
  for (const auto& a : r.assumptions) out += fmt::format("    - {}\n", a);
  return out;
}

std::string training_step_json(const target::TrainingReport& r, const std::string& machine) {
  nlohmann::json doc = report_json(r);
  doc["schema"] = "tessera-train-step/1";
  doc["machine"] = machine;
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& e : r.timeline)
    timeline.push_back({{"track", e.track}, {"name", e.name}, {"start_s", e.start_s}, {"duration_s", e.duration_s}});
  doc["timeline"] = timeline;
  return doc.dump(1) + "\n";
}

std::string training_trace_json(const target::TrainingReport& r) {
  nlohmann::json events = nlohmann::json::array();
  std::vector<std::string> tracks;
  for (const auto& e : r.timeline) {
    auto it = std::find(tracks.begin(), tracks.end(), e.track);
    if (it == tracks.end()) {
      it = tracks.insert(tracks.end(), e.track);
      events.push_back({{"ph", "M"},
                        {"name", "thread_name"},
                        {"pid", 0},
                        {"tid", it - tracks.begin()},
                        {"args", {{"name", e.track}}}});
    }
    events.push_back({{"ph", "X"},
                      {"name", e.name},
                      {"pid", 0},
                      {"tid", it - tracks.begin()},
                      {"ts", e.start_s * 1e6},
                      {"dur", e.duration_s * 1e6}});
  }
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", 0},
                    {"args", {{"name", fmt::format("one training step of {} on {}", r.model_name, r.arch_name)}}}});
  return nlohmann::json{{"format", "tessera-trace/1"}, {"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() +
         "\n";
}

std::string training_compare_table(const std::vector<TrainingCompareRow>& rows) {
  std::string out = fmt::format("{:<12} {:>6} {:>10} {:>12} {:>6} {:>22} {:>9}  {:<36} {}\n", "machine", "chips",
                                "step s", "tokens/s", "MFU", "memory", "J/token", "bound", "layout");
  for (const auto& row : rows) {
    if (!row.report) {
      out += fmt::format("{:<12} does not run: {}\n", row.machine, row.failure);
      continue;
    }
    const auto& r = *row.report;
    const auto [unit, unit_name] = memory_unit(r.memory.available);
    out += fmt::format("{:<12} {:>6} {:>10.4g} {:>12.4g} {:>5.1f}% {:>8.1f} of {:>6.1f} {} {:>9.3g}  {:<36} {}\n",
                       row.machine, r.chips, r.step_s, r.tokens_per_s, 100 * r.mfu, r.memory.used() / unit,
                       r.memory.available / unit, unit_name,
                       r.energy_per_step_j / static_cast<double>(r.global_batch * r.seq), r.bound, r.layout);
  }
  return out;
}

std::string training_compare_json(const std::vector<TrainingCompareRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& row : rows) {
    nlohmann::json j = row.report ? report_json(*row.report) : nlohmann::json{{"failure", row.failure}};
    j["machine"] = row.machine;
    out.push_back(j);
  }
  return nlohmann::json{{"schema", "tessera-compare-train/1"}, {"rows", out}}.dump(1) + "\n";
}

}  // namespace tessera::report
