// `tessera report`: one self-contained HTML page (inline SVG and data: images, no scripts, no
// network) from a run's JSON. Every figure on the page carries an id so tests can check it against
// the JSON.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "tessera/base/error.hpp"
#include "tessera/report/heatmap.hpp"
#include "tessera/report/markup.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/report/validation.hpp"

namespace tessera::report {

namespace {

using nlohmann::json;

std::string row(const std::string& label, const std::string& id, const std::string& value, const std::string& unit) {
  return fmt::format("<tr><th>{}</th><td id=\"{}\">{}</td><td>{}</td></tr>\n", label, id, value, unit);
}

std::string energy_bar(const json& e) {
  const std::array<std::pair<const char*, const char*>, 4> parts = {
      {{"compute_pj", "#3b528b"}, {"sram_pj", "#21918c"}, {"fabric_pj", "#5ec962"}, {"offchip_pj", "#fde725"}}};
  const double total = e.at("total_pj").get<double>();
  std::string svg = "<svg width=\"620\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">";
  double x = 0;
  for (const auto& [key, colour] : parts) {
    const double w = total > 0 ? 600 * e.at(key).get<double>() / total : 0;
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"5\" width=\"{:.1f}\" height=\"25\" fill=\"{}\"><title>{}: {:.4g} pJ</title></rect>", x,
        w, colour, key, e.at(key).get<double>());
    x += w;
  }
  svg += "</svg>\n<table>";
  for (const auto& [key, colour] : parts)
    svg += fmt::format(
        "<tr><th><span style=\"color:{}\">&#9632;</span> {}</th><td id=\"energy-{}\">{:.6g}</td><td>mJ</td></tr>",
        colour, std::string(key).substr(0, std::string(key).size() - 3), key, e.at(key).get<double>() * 1e-9);
  return svg + "</table>\n";
}

// Per-op roofline for the last decode pass: arithmetic per core per cycle against operational
// intensity (MACs per word the step's collective moves), under the compute roof (peak MACs per
// cycle) and the link roof (words per cycle x intensity).
std::string roofline(const json& run) {
  const double peak = run.at("peak_macs_per_cycle_per_core").get<double>();
  const double link = run.at("link_words_per_cycle").get<double>();
  const double x0 = -1, x1 = 5, y0 = -3, y1 = std::ceil(std::log10(peak)) + 1;
  const double width = 620, height = 380, left = 60, bottom = 340;
  auto px = [&](double v) { return left + (std::log10(v) - x0) / (x1 - x0) * (width - left - 20); };
  auto py = [&](double v) { return bottom - (std::log10(v) - y0) / (y1 - y0) * (bottom - 20); };
  std::string svg = fmt::format(
      "<svg width=\"{}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">", width, height);
  svg +=
      fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", left, bottom, width - 20, bottom);
  svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"20\" stroke=\"black\"/>", left, bottom, left);
  for (double e = x0; e <= x1; ++e)
    svg += fmt::format("<text x=\"{:.0f}\" y=\"{}\">1e{}</text>", px(std::pow(10, e)) - 8, bottom + 15, e);
  for (double e = y0; e <= y1; ++e)
    svg += fmt::format("<text x=\"5\" y=\"{:.0f}\">1e{}</text>", py(std::pow(10, e)) + 4, e);
  svg += fmt::format("<text x=\"{}\" y=\"{}\">MACs per collective word (per core)</text>", left + 150, bottom + 32);
  svg += fmt::format("<text x=\"{}\" y=\"14\">achieved MACs per cycle per core (log)</text>", left);
  // Roofs: min(peak, link * intensity).
  const double knee = peak / link;
  svg += fmt::format(
      "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"{:.1f},{:.1f} {:.1f},{:.1f} "
      "{:.1f},{:.1f}\"/>",
      px(std::pow(10, x0)), py(link * std::pow(10, x0)), px(knee), py(peak), px(std::pow(10, x1)), py(peak));
  svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" fill=\"#c0392b\">peak {:.3g} MACs/cycle</text>", px(knee) + 5,
                     py(peak) - 5, peak);
  int points = 0;
  for (const auto& s : run.at("decode_steps")) {
    const double macs = s.at("macs_per_core").get<double>(), words = s.at("collective_words").get<double>();
    const double cycles = s.at("compute_cycles").get<double>() + s.at("communication_cycles").get<double>() +
                          s.at("host_cycles").get<double>();
    if (macs <= 0 || cycles <= 0) continue;
    const double intensity = std::clamp(macs / std::max(words, 1.0), std::pow(10, x0), std::pow(10, x1));
    const double achieved = std::clamp(macs / cycles, std::pow(10, y0), std::pow(10, y1));
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"#3b528b\" fill-opacity=\"0.6\"><title>{}: {:.4g} "
        "MACs/cycle</title></circle>",
        px(intensity), py(achieved), markup_escaped(s.at("name").get<std::string>()), macs / cycles);
    ++points;
  }
  return svg + fmt::format("</svg>\n<p id=\"roofline-points\">{}</p>\n", points);
}

// The page of a run on a target without a mesh's per-core figures (GPUs, IPUs, Trainium): the
// summary, the phases, memory and the last pass of each phase step by step.
std::string chip_page(const json& run) {
  const std::string title =
      fmt::format("{} on {}", run.at("model").get<std::string>(), run.at("arch").get<std::string>());
  const auto& p = run.at("precision");
  std::string html =
      kHtmlHead +
      fmt::format(
          "{}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} "
          "table{{border-collapse:collapse;margin:0.5em 0}} th,td{{padding:2px 10px;text-align:left;border-bottom:1px "
          "solid "
          "#ddd}} td{{font-variant-numeric:tabular-nums}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>"
          "</head><body>\n<h1 id=\"title\">{}</h1>\n<p>{} fabric; weights {}, activations {}, KV cache {}; {} prompt "
          "tokens, {} generated; batch {} (requests decoded together).</p>\n",
          markup_escaped(title), markup_escaped(title), markup_escaped(run.at("fabric").get<std::string>()),
          markup_escaped(p.at("weights").get<std::string>()), markup_escaped(p.at("activations").get<std::string>()),
          markup_escaped(p.at("kv").get<std::string>()), run.at("tokens").at("prompt").get<int64_t>(),
          run.at("tokens").at("generated").get<int64_t>(), run.at("tokens").at("batch").get<int64_t>());
  const auto& memory = run.at("memory");
  html += "<h2>Summary</h2>\n<table>\n";
  html += row("time to first token", "ttft-ms",
              fmt::format("{:.6g}", run.at("time_to_first_token_s").get<double>() * 1e3), "ms");
  html += row("decode, per user", "decode-tps",
              fmt::format("{:.6g}", run.at("decode_tokens_per_s_per_user").get<double>()), "tokens/s");
  html += row("decode, all requests", "decode-tps-all",
              fmt::format("{:.6g}", run.at("decode_tokens_per_s").get<double>()), "tokens/s");
  html += row("energy per decoded token", "energy-per-token-mj",
              fmt::format("{:.6g}", run.at("energy_per_decode_token").at("total_pj").get<double>() * 1e-9), "mJ");
  html += row("decode bound", "bound", markup_escaped(run.at("bound").get<std::string>()),
              fmt::format("utilisation {:.1f}%", 100 * run.at("utilization").get<double>()));
  html += row(markup_escaped(memory.at("resource").get<std::string>()), "memory-used-gib",
              fmt::format("{:.6g}", memory.at("used_bytes").get<double>() / (1 << 30)),
              fmt::format("GiB used of {:.6g}", memory.at("available_bytes").get<double>() / (1 << 30)));
  html += fmt::format("<tr><th>decode</th><td id=\"decode-ms\">{:.6g}</td><td>ms over {} passes</td></tr>\n</table>\n",
                      run.at("decode").at("seconds").get<double>() * 1e3, run.at("decode").at("passes").get<int64_t>());
  for (const auto& [key, heading] : {std::pair{"prefill_last_pass", "Prefill, the prompt's last pass"},
                                     std::pair{"decode_last_pass", "Decode, the last pass"}}) {
    html += fmt::format(
        "<h2>{}</h2>\n<table><tr><th>step</th><th>op</th><th>bound</th><th>time (us)</th>"
        "<th>MACs</th><th>bytes</th></tr>\n",
        heading);
    for (const auto& st : run.at("steps").at(key))
      html +=
          fmt::format("<tr><th>{}</th><td>{}</td><td>{}</td><td>{:.4g}</td><td>{:.4g}</td><td>{:.4g}</td></tr>\n",
                      markup_escaped(st.at("name").get<std::string>()), markup_escaped(st.at("op").get<std::string>()),
                      markup_escaped(st.at("bound").get<std::string>()), st.at("seconds").get<double>() * 1e6,
                      st.at("macs").get<double>(), st.at("bytes").get<double>());
    html += "</table>\n";
  }
  const auto& config = run.at("config");
  html += fmt::format("<h2>Configuration</h2>\n<h3>{}</h3><pre>{}</pre>\n<h3>{}</h3><pre>{}</pre>\n",
                      markup_escaped(config.at("arch_origin").get<std::string>()),
                      markup_escaped(config.at("arch_yaml").get<std::string>()),
                      markup_escaped(config.at("model_origin").get<std::string>()),
                      markup_escaped(config.at("model_yaml").get<std::string>()));
  return html + "</body></html>\n";
}

}  // namespace

namespace {

// A run JSON is untrusted input (written elsewhere, edited by hand): before anything is drawn,
// its grid must be of a size a machine has, every stage inside it, and the link map's arrays as
// long as the map they describe.
void check_figures(const RunFigures& f, const std::string& origin) {
  constexpr int64_t kMaxGridSide = 1 << 14, kMaxCores = int64_t{1} << 26;  // WSE-3: ~1,000 x 1,000
  if (f.grid_width < 1 || f.grid_height < 1 || f.grid_width > kMaxGridSide || f.grid_height > kMaxGridSide ||
      f.grid_width * f.grid_height > kMaxCores)
    fail("{}: grid {}x{} is not a machine tessera simulates (each side 1..{}, at most {} cores)", origin, f.grid_width,
         f.grid_height, kMaxGridSide, kMaxCores);
  for (const auto& st : f.stages) {
    const arch::Region& r = st.region;
    if (r.x < 0 || r.y < 0 || r.width < 1 || r.height < 1 || r.x > f.grid_width - r.width ||
        r.y > f.grid_height - r.height)
      fail("{}: stage '{}' region {}x{} at ({}, {}) lies outside the {}x{} grid", origin, st.name, r.width, r.height,
           r.x, r.y, f.grid_width, f.grid_height);
  }
  const LinkMap& l = f.links;
  if (l.width == 0 && l.height == 0) return;
  if (l.block < 1 || l.width != (f.grid_width + l.block - 1) / l.block ||
      l.height != (f.grid_height + l.block - 1) / l.block)
    fail("{}: link_load is {}x{} cells of {} cores, which does not cover the {}x{} grid", origin, l.width, l.height,
         l.block, f.grid_width, f.grid_height);
  for (const auto& words : l.words)
    if (words.size() != static_cast<size_t>(l.width * l.height))
      fail("{}: link_load has {} values in a direction, expected {} ({}x{} cells)", origin, words.size(),
           l.width * l.height, l.width, l.height);
}

}  // namespace

std::string html_report(const std::string& run_json, const std::string& origin) {
  const json run = json::parse(run_json, nullptr, false);
  const std::string schema = run.is_object() ? run.value("schema", "") : "";
  if (schema == "tessera-validate/1") return validation_html(validation_rows_from_json(run_json, origin));
  if (schema.starts_with("tessera-run/") && schema != "tessera-run/2")
    fail("{}: written by another tessera version (schema {}, this one reads tessera-run/2); run it again", origin,
         schema);
  if (run.is_discarded() || schema != "tessera-run/2")
    fail(
        "{}: not a tessera run or validation (write one with `tessera run --arch ARCH --json FILE` or `tessera "
        "validate --json FILE`)",
        origin);
  try {
    // A run with a per-core section (its grid and stage regions) gets the core maps; others, the
    // figures every target reports.
    if (!run.contains("grid") || !run.contains("stages")) return chip_page(run);
    RunFigures figures{run.at("grid").at("width").get<int64_t>(),
                       run.at("grid").at("height").get<int64_t>(),
                       run.at("sram").at("usable_bytes_per_core").get<double>(),
                       run.at("prefill").at("cycles").get<double>() + run.at("decode").at("cycles").get<double>(),
                       {},
                       {}};
    if (const auto& l = run.at("link_load"); !l.is_null()) {
      figures.links.block = l.at("block").get<int64_t>();
      figures.links.width = l.at("width").get<int64_t>();
      figures.links.height = l.at("height").get<int64_t>();
      const std::array<const char*, 4> directions = {"east", "west", "north", "south"};
      for (size_t d = 0; d < 4; ++d) figures.links.words[d] = l.at(directions[d]).get<std::vector<double>>();
    }
    for (const auto& s : run.at("stages")) {
      const auto& r = s.at("region");
      const auto& b = s.at("bytes_per_core");
      figures.stages.push_back({s.at("name").get<std::string>(),
                                {r.at("x").get<int64_t>(), r.at("y").get<int64_t>(), r.at("width").get<int64_t>(),
                                 r.at("height").get<int64_t>()},
                                b.at("weights").get<int64_t>(),
                                b.at("kv_cache").get<int64_t>(),
                                b.at("activations").get<int64_t>(),
                                s.at("compute_cycles").get<double>(),
                                s.at("decode_energy_pj").get<double>()});
    }
    check_figures(figures, origin);
    const std::string title =
        fmt::format("{} on {}", run.at("model").get<std::string>(), run.at("arch").get<std::string>());
    std::string html =
        kHtmlHead +
        fmt::format(
            "{}</title>\n<style>"
            "body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:0.5em "
            "0}}"
            "th,td{{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}} "
            "td{{font-variant-numeric:tabular-nums}}"
            "pre{{background:#f6f6f6;padding:1em;overflow:auto}} .maps svg{{margin:0.5em}}</style></head><body>\n"
            "<h1 id=\"title\">{}</h1>\n<p>weights {}, activations {}, KV cache {}; {} fabric model, {:.2f} GHz; {} "
            "prompt "
            "tokens, {} generated.</p>\n",
            markup_escaped(title), markup_escaped(title),
            markup_escaped(run.at("precision").at("weights").get<std::string>()),
            markup_escaped(run.at("precision").at("activations").get<std::string>()),
            markup_escaped(run.at("precision").at("kv").get<std::string>()),
            markup_escaped(run.at("fabric_model").get<std::string>()), run.at("clock_hz").get<double>() / 1e9,
            run.at("tokens").at("prompt").get<int64_t>(), run.at("tokens").at("generated").get<int64_t>());
    html += "<h2>Summary</h2>\n<table>\n";
    html += row("time to first token", "ttft-ms",
                fmt::format("{:.6g}", run.at("time_to_first_token_s").get<double>() * 1e3), "ms");
    html += row("decode, per user", "decode-tps",
                fmt::format("{:.6g}", run.at("decode_tokens_per_s_per_user").get<double>()), "tokens/s");
    html += row("SRAM high-water", "sram-high-water-kib",
                fmt::format("{:.6g}", run.at("sram").at("high_water_bytes_per_core").get<double>() / 1024),
                fmt::format("KiB per core of {:.1f} (stage {})", figures.usable_sram_per_core / 1024,
                            markup_escaped(run.at("sram").at("high_water_stage").get<std::string>())));
    html += row("energy per decoded token", "energy-per-token-mj",
                fmt::format("{:.6g}", run.at("energy_per_decode_token").at("total_pj").get<double>() * 1e-9), "mJ");
    html += row("cores used", "cores-used", std::to_string(run.at("cores").at("used").get<int64_t>()),
                fmt::format("of {}", run.at("cores").at("usable").get<int64_t>()));
    html +=
        "</table>\n<h2>Phases</h2>\n<table><tr><th>phase</th><th>time (ms)</th><th>cycles</th><th>passes</th>"
        "<th>compute</th><th>communication</th><th>idle</th></tr>\n";
    for (const char* phase : {"prefill", "decode"}) {
      const auto& p = run.at(phase);
      const auto& t = p.at("core_time");
      html += fmt::format(
          "<tr><th>{0}</th><td id=\"{0}-ms\">{1:.6g}</td><td>{2:.0f}</td><td>{3}</td><td>{4:.1f}%</td><td>{5:.1f}%</td>"
          "<td>{6:.1f}%</td></tr>\n",
          phase, p.at("seconds").get<double>() * 1e3, p.at("cycles").get<double>(), p.at("passes").get<int64_t>(),
          100 * t.at("compute").get<double>(), 100 * t.at("communication").get<double>(),
          100 * t.at("idle").get<double>());
    }
    html +=
        "</table><p>Core-time: how the used cores spent the phase. At batch 1 a layer-pipelined wafer works on "
        "one layer at a time, so most cores idle.</p>\n";
    html += "<h2>Energy per decoded token</h2>\n" + energy_bar(run.at("energy_per_decode_token"));
    html += "<h2>The machine, core by core</h2>\n<div class=\"maps\">\n";
    for (const auto& map : mesh_heatmaps(figures)) html += heatmap_svg(map);
    html += "</div>\n<h2>Per-op roofline (last decode pass)</h2>\n" + roofline(run);
    html +=
        "<h2>Fit: memory per core</h2>\n<table><tr><th>stage</th><th>region</th><th>cores</th><th>weights</th>"
        "<th>KV cache</th><th>activations</th><th>total (KiB)</th></tr>\n";
    for (const auto& st : figures.stages)
      html += fmt::format(
          "<tr><th>{}</th><td>{},{} "
          "{}x{}</td><td>{}</td><td>{:.1f}</td><td>{:.1f}</td><td>{:.1f}</td><td>{:.1f}</td></tr>\n",
          markup_escaped(st.name), st.region.x, st.region.y, st.region.width, st.region.height, st.region.cores(),
          static_cast<double>(st.weight_bytes) / 1024, static_cast<double>(st.kv_cache_bytes) / 1024,
          static_cast<double>(st.activation_bytes) / 1024, static_cast<double>(st.bytes_per_core()) / 1024);
    const auto& config = run.at("config");
    html += fmt::format("</table>\n<h2>Configuration</h2>\n<h3>{}</h3><pre>{}</pre>\n<h3>{}</h3><pre>{}</pre>\n",
                        markup_escaped(config.at("arch_origin").get<std::string>()),
                        markup_escaped(config.at("arch_yaml").get<std::string>()),
                        markup_escaped(config.at("model_origin").get<std::string>()),
                        markup_escaped(config.at("model_yaml").get<std::string>()));
    return html + "</body></html>\n";
  } catch (const json::exception& e) {
    fail("{}: malformed tessera run: {}", origin, e.what());
  }
}

}  // namespace tessera::report
