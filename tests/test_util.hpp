// Helpers shared by the test programs.
#pragma once

#include <functional>
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

}  // namespace tessera::testing
