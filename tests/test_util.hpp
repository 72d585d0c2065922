// Helpers shared by the test programs.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <string>

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
