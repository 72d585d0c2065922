// Heatmaps of a mesh machine: one value per core, drawn as PNG (stb_image_write) and as SVG (the
// same raster embedded, plus stage outlines, labels and a colour scale with units). Large meshes
// are down-sampled to at most `max_pixels` on the long side, each pixel showing the largest value
// of the cores it covers.
#pragma once

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "tessera/report/mesh_report.hpp"

namespace tessera::report {

struct Heatmap {
  std::string title;
  std::string unit;
  int64_t width = 0, height = 0;  // cores
  std::vector<double> values;     // row-major, NaN for cores no stage uses
  std::vector<std::pair<std::string, arch::Region>> outlines;
};

// SRAM per core (KiB), share of the run each core spends computing (%), decode energy per core
// and token (nJ): the maps `run --heatmaps` writes.
std::vector<Heatmap> mesh_heatmaps(const RunFigures& run);

std::string heatmap_svg(const Heatmap& map, int64_t max_pixels = 800);
// The heatmap as PNG file bytes, at most max_pixels on its longer side.
std::string heatmap_png(const Heatmap& map, int64_t max_pixels = 800);
// A PNG file of `width` x `height` pixels, 8-bit RGB, row by row from the top.
std::string png_file(int64_t width, int64_t height, const std::vector<uint8_t>& rgb);

}  // namespace tessera::report
