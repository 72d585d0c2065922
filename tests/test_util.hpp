// Helpers shared by the test programs.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tessera/base/error.hpp"

namespace tessera::testing {

// The message of the tessera::Error that f throws, or "" if it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Every arch preset in configs/arch/, found by listing the directory (a new preset file is covered
// without editing a test).
inline std::vector<std::filesystem::path> arch_presets() {
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(TESSERA_SOURCE_DIR "/configs/arch"))
    if (f.path().extension() == ".yaml") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  return files;
}

// The largest absolute difference, relative to the largest magnitude of `want`.
inline double max_relative_error(std::span<const float> got, std::span<const float> want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, static_cast<double>(std::abs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::abs(want[i])));
  }
  return err / scale;
}

}  // namespace tessera::testing
