#include "tessera/report/heatmap.hpp"

#include <fmt/core.h>
#include <stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "tessera/base/error.hpp"
#include "tessera/report/markup.hpp"

namespace tessera::report {

namespace {

struct Raster {
  int64_t width = 0, height = 0, block = 1;  // pixels, cores per pixel side
  std::vector<uint8_t> rgb;
  double low = 0, high = 0;
};

// A perceptually ordered dark-blue -> teal -> yellow ramp (viridis key colours).
std::array<uint8_t, 3> colour(double t) {
  static constexpr std::array<std::array<double, 3>, 5> stops = {
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  t = std::clamp(t, 0.0, 1.0) * (stops.size() - 1);
  const auto i = std::min<size_t>(static_cast<size_t>(t), stops.size() - 2);
  const double f = t - static_cast<double>(i);
  std::array<uint8_t, 3> out{};
  for (size_t c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
  return out;
}

Raster rasterize(const Heatmap& map, int64_t max_pixels, bool outlines) {
  Raster r;
  r.block = std::max<int64_t>(1, (std::max(map.width, map.height) + max_pixels - 1) / max_pixels);
  r.width = (map.width + r.block - 1) / r.block;
  r.height = (map.height + r.block - 1) / r.block;
  std::vector<double> pixels(static_cast<size_t>(r.width * r.height), std::numeric_limits<double>::quiet_NaN());
  for (int64_t y = 0; y < map.height; ++y)
    for (int64_t x = 0; x < map.width; ++x) {
      const double v = map.values[static_cast<size_t>(y * map.width + x)];
      if (std::isnan(v)) continue;
      double& p = pixels[static_cast<size_t>((y / r.block) * r.width + x / r.block)];
      p = std::isnan(p) ? v : std::max(p, v);
    }
  r.low = std::numeric_limits<double>::infinity(), r.high = -r.low;
  for (double v : map.values)
    if (!std::isnan(v)) r.low = std::min(r.low, v), r.high = std::max(r.high, v);
  if (!(r.low <= r.high)) r.low = r.high = 0;
  const double span = r.high > r.low ? r.high - r.low : 1.0;
  r.rgb.resize(static_cast<size_t>(r.width * r.height * 3));
  for (size_t i = 0; i < pixels.size(); ++i) {
    const auto c = std::isnan(pixels[i]) ? std::array<uint8_t, 3>{40, 40, 40} : colour((pixels[i] - r.low) / span);
    std::copy(c.begin(), c.end(), r.rgb.begin() + static_cast<std::ptrdiff_t>(3 * i));
  }
  if (outlines) {  // stage borders in white (the SVG draws them as vectors, with labels)
    auto white = [&](int64_t x, int64_t y) {
      if (x >= 0 && y >= 0 && x < r.width && y < r.height)
        std::fill_n(r.rgb.begin() + static_cast<std::ptrdiff_t>(3 * (y * r.width + x)), 3, uint8_t{255});
    };
    for (const auto& [name, reg] : map.outlines) {
      const int64_t x0 = reg.x / r.block, y0 = reg.y / r.block;
      const int64_t x1 = (reg.x + reg.width - 1) / r.block, y1 = (reg.y + reg.height - 1) / r.block;
      for (int64_t x = x0; x <= x1; ++x) white(x, y0), white(x, y1);
      for (int64_t y = y0; y <= y1; ++y) white(x0, y), white(x1, y);
    }
  }
  return r;
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::string*>(context);
  out->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

std::string png_bytes(const Raster& r) {
  std::string out;
  if (!stbi_write_png_to_func(append_bytes, &out, static_cast<int>(r.width), static_cast<int>(r.height), 3,
                              r.rgb.data(), static_cast<int>(r.width * 3)))
    fail("could not encode a {}x{} PNG", r.width, r.height);
  return out;
}

std::string base64(const std::string& in) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < in.size() ? table[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? table[n & 63] : '=';
  }
  return out;
}

}  // namespace

std::vector<Heatmap> mesh_heatmaps(const RunFigures& run) {
  const int64_t w = run.grid_width, h = run.grid_height;
  std::vector<Heatmap> maps = {{"SRAM used per core (weights, KV cache, activations)", "KiB", w, h, {}, {}},
                               {"Share of the run each core computes", "%", w, h, {}, {}},
                               {"Decode energy per core and token", "nJ", w, h, {}, {}}};
  for (auto& m : maps) m.values.assign(static_cast<size_t>(w * h), std::nan(""));
  // Stages sharing a region (several layers on the same cores) add up on it.
  for (const auto& st : run.stages) {
    const double cores = static_cast<double>(st.region.cores());
    const std::array<double, 3> v = {static_cast<double>(st.bytes_per_core()) / 1024,
                                     run.total_cycles > 0 ? 100 * st.compute_cycles / run.total_cycles : 0.0,
                                     st.decode_energy_pj / cores / 1000};
    for (size_t k = 0; k < maps.size(); ++k) {
      maps[k].outlines.emplace_back(st.name, st.region);
      for (int64_t y = st.region.y; y < st.region.y + st.region.height; ++y)
        for (int64_t x = st.region.x; x < st.region.x + st.region.width; ++x) {
          double& cell = maps[k].values[static_cast<size_t>(y * w + x)];
          cell = std::isnan(cell) ? v[k] : cell + v[k];
        }
    }
  }
  const LinkMap& l = run.links;
  const std::array<const char*, 4> directions = {"eastward", "westward", "northward", "southward"};
  for (size_t d = 0; l.width > 0 && d < 4; ++d) {
    Heatmap m{
        fmt::format("Link load {} (words over the run, busiest link per {}x{} cores)", directions[d], l.block, l.block),
        "k words",
        l.width,
        l.height,
        {},
        {}};
    for (double v : l.words[d]) m.values.push_back(v / 1000);
    for (const auto& st : run.stages) {
      const auto& r = st.region;
      const int64_t x0 = r.x / l.block, y0 = r.y / l.block;
      const int64_t x1 = (r.x + r.width + l.block - 1) / l.block, y1 = (r.y + r.height + l.block - 1) / l.block;
      m.outlines.emplace_back(st.name, arch::Region{x0, y0, x1 - x0, y1 - y0});
    }
    maps.push_back(std::move(m));
  }
  return maps;
}

std::string heatmap_svg(const Heatmap& map, int64_t max_pixels) {
  const Raster r = rasterize(map, max_pixels, false);
  const double scale = static_cast<double>(std::max<int64_t>(1, 640 / std::max(r.width, r.height)));
  const double w = static_cast<double>(r.width) * scale, h = static_cast<double>(r.height) * scale;
  const double cell = scale / static_cast<double>(r.block);  // SVG units per core
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\">\n"
      "<text x=\"10\" y=\"22\" font-size=\"16\">{}</text>\n"
      "<text x=\"10\" y=\"40\" font-size=\"12\">{} x {} cores{}; grey: unused</text>\n"
      "<image x=\"10\" y=\"50\" width=\"{:.0f}\" height=\"{:.0f}\" style=\"image-rendering:pixelated\" "
      "href=\"data:image/png;base64,{}\"/>\n",
      w + 140, h + 70, markup_escaped(map.title), map.width, map.height,
      r.block > 1 ? fmt::format(", each pixel the max of {}x{} cores", r.block, r.block) : "", w, h,
      base64(png_bytes(r)));
  for (const auto& [name, reg] : map.outlines) {
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"white\" "
        "stroke-width=\"1\"/>\n",
        10 + static_cast<double>(reg.x) * cell, 50 + static_cast<double>(reg.y) * cell,
        static_cast<double>(reg.width) * cell, static_cast<double>(reg.height) * cell);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"white\">{}</text>\n",
                       12 + static_cast<double>(reg.x) * cell, 60 + static_cast<double>(reg.y) * cell,
                       markup_escaped(name));
  }
  // Colour scale.
  for (int i = 0; i < 100; ++i) {
    const auto c = colour(1.0 - i / 99.0);
    svg += fmt::format("<rect x=\"{:.0f}\" y=\"{:.2f}\" width=\"20\" height=\"{:.2f}\" fill=\"rgb({},{},{})\"/>\n",
                       w + 30, 50 + h * i / 100.0, h / 100.0 + 0.5, c[0], c[1], c[2]);
  }
  svg += fmt::format("<text x=\"{:.0f}\" y=\"58\" font-size=\"11\">{:.4g} {}</text>\n", w + 55, r.high, map.unit);
  svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" font-size=\"11\">{:.4g} {}</text>\n", w + 55, 50 + h, r.low,
                     map.unit);
  return svg + "</svg>\n";
}

std::string png_file(int64_t width, int64_t height, const std::vector<uint8_t>& rgb) {
  return png_bytes({width, height, 1, rgb, 0, 0});
}

std::string heatmap_png(const Heatmap& map, int64_t max_pixels) { return png_bytes(rasterize(map, max_pixels, true)); }

}  // namespace tessera::report
